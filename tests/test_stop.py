"""Stop requests: the first Ctrl-C or SIGTERM asks the trainer to stop, a second one stops at once.

(The trainers' side, checkpointing the step reached and resuming from it, is tested end to end in
test_cli.py for online runs and test_multitask.py for offline runs.)
"""

import os
import signal

import pytest

from mbdpo.training.stop import StopRequest


def test_the_first_signal_is_a_request_the_second_an_interrupt_and_the_handlers_are_restored():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest("episode") as stop:
        assert stop.signal is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end this process without the request's handler
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_the_burst_left_by_a_checkpoint_and_by_one_from_before_the_count():
    from mbdpo.training.online import burst_left

    assert burst_left({"burst_left": 7, "burst_pending": True}, seed_steps=500) == 7
    assert burst_left({"burst_pending": True}, seed_steps=500) == 500  # stopped before its burst: all of it
    assert burst_left({"burst_pending": False}, seed_steps=500) == 0
