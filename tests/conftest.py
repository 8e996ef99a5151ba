"""Test-session set-up: each pytest-xdist worker computes with one thread.

The workers already keep every core busy; more threads per worker would only
make them compete. Set before torch is imported, so that the ``mbdpo``
commands the tests start inherit it too.
"""

import os

if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
