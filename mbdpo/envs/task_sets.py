"""The multi-task sets mt30 and mt80 of TD-MPC2's public data sets, in their exact order.

A task's position in its set is the ``task`` index stored in the data sets, so
the order here must never change. :data:`TASK_SHAPES` gives every task's
observation and action dimensions without building its environment (MetaWorld
is an optional suite); a test checks the DMControl entries against the real
environments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mbdpo.errors import UnknownTaskError, closest

MT30: tuple[str, ...] = (
    "walker-stand", "walker-walk", "walker-run", "cheetah-run", "reacher-easy", "reacher-hard",
    "acrobot-swingup", "pendulum-swingup", "cartpole-balance", "cartpole-balance-sparse", "cartpole-swingup",
    "cartpole-swingup-sparse", "cup-catch", "finger-spin", "finger-turn-easy", "finger-turn-hard", "fish-swim",
    "hopper-stand", "hopper-hop", "walker-walk-backwards", "walker-run-backwards", "cheetah-run-backwards",
    "cheetah-run-front", "cheetah-run-back", "cheetah-jump", "hopper-hop-backwards", "reacher-three-easy",
    "reacher-three-hard", "cup-spin", "pendulum-spin",
)

METAWORLD_MT80: tuple[str, ...] = tuple("mw-" + name for name in (
    "assembly", "basketball", "button-press-topdown", "button-press-topdown-wall", "button-press",
    "button-press-wall", "coffee-button", "coffee-pull", "coffee-push", "dial-turn", "disassemble", "door-open",
    "door-close", "drawer-close", "drawer-open", "faucet-open", "faucet-close", "hammer", "handle-press-side",
    "handle-press", "handle-pull-side", "handle-pull", "lever-pull", "peg-insert-side", "peg-unplug-side",
    "pick-out-of-hole", "pick-place", "pick-place-wall", "plate-slide", "plate-slide-side", "plate-slide-back",
    "plate-slide-back-side", "push-back", "push", "push-wall", "reach", "reach-wall", "shelf-place", "soccer",
    "stick-push", "stick-pull", "sweep-into", "sweep", "window-open", "window-close", "bin-picking", "box-close",
    "door-lock", "door-unlock", "hand-insert",
))

MT80: tuple[str, ...] = MT30 + METAWORLD_MT80

TASK_SETS: dict[str, tuple[str, ...]] = {"mt30": MT30, "mt80": MT80}


@dataclass(frozen=True)
class TaskShape:
    """What a multi-task model needs to know of a task without building it."""

    obs_dim: int
    action_dim: int
    episode_length: int


def _dmcontrol_shapes() -> dict[str, TaskShape]:
    dims = {
        "walker": (24, 6), "cheetah": (17, 6), "reacher": (6, 2), "acrobot": (6, 1), "pendulum": (3, 1),
        "cartpole": (5, 1), "cup": (8, 2), "finger-spin": (9, 2), "finger-turn": (12, 2), "fish": (24, 5),
        "hopper": (15, 4), "reacher-three": (8, 3),
    }
    shapes = {}
    for task in MT30:
        # The longest matching prefix: "reacher-three-easy" is a 3-link reacher, "finger-turn-hard" a turn task.
        key = max((prefix for prefix in dims if task.startswith(prefix)), key=len)
        shapes[task] = TaskShape(*dims[key], episode_length=500)
    return shapes


TASK_SHAPES: dict[str, TaskShape] = {
    **_dmcontrol_shapes(),
    **{task: TaskShape(obs_dim=39, action_dim=4, episode_length=100) for task in METAWORLD_MT80},
}


def task_set(name: str) -> tuple[str, ...]:
    """The ordered tasks of ``mt30`` or ``mt80``."""
    if name not in TASK_SETS:
        raise UnknownTaskError(f"unknown task set {name!r}; valid: {', '.join(TASK_SETS)}")
    return TASK_SETS[name]


def is_task_set(name: str) -> bool:
    return name in TASK_SETS


def padded_dims(tasks: Sequence[str]) -> tuple[int, int]:
    """Observation and action sizes of a multi-task model of ``tasks``: the largest task's
    (24 and 6 for mt30, 39 and 6 for mt80)."""
    shapes = [task_shape(task) for task in tasks]
    return max(s.obs_dim for s in shapes), max(s.action_dim for s in shapes)


def task_shape(task: str) -> TaskShape:
    if task not in TASK_SHAPES:
        raise UnknownTaskError(f"task {task!r} is in no multi-task set; {closest(task, TASK_SHAPES)}")
    return TASK_SHAPES[task]
