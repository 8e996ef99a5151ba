"""Custom DMControl tasks built on the suite's domains.

Each task subclasses a suite task, keeping its physics, initial-state
distribution and observations and changing what is rewarded (cup-spin also
changes the initial state). The three-link reacher has its own model,
``assets/reacher_three.xml``, and reuses the suite's reacher task.

:data:`BUILDERS` maps every task name to a function that builds its
dm_control environment from a seed. This module imports dm_control, so
:mod:`mbdpo.envs.dmcontrol` imports it only when a custom task is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, base, cheetah, common, hopper, pendulum, reacher, walker
from dm_control.utils.rewards import tolerance

from mbdpo.envs.dmcontrol import load_suite_env

Builder = Callable[[int], control.Environment]
"""Builds a task's dm_control environment from the seed of its random state."""

_INF = float("inf")

# Cheetah.
_CHEETAH_BACKWARDS_SPEED = 8.0
_CHEETAH_ONE_FOOT_SPEED = 6.0
_CHEETAH_HEIGHT = 1.2
_CHEETAH_HEIGHT_MARGIN = 0.6
_CHEETAH_STILL_SPEED = 0.5
_CHEETAH_FEET = ("ffoot", "bfoot")

# Walker.
_WALKER_WALK_SPEED = 1.0
_WALKER_RUN_SPEED = 8.0

# Hopper.
_HOPPER_HEIGHT = (0.6, 2.0)
_HOPPER_BACKWARDS_SPEED = 1.0

# Ball in cup.
_CUP_START_INSIDE_PROBABILITY = 0.9
_CUP_SPIN_DISTANCE = 0.5
_CUP_SPIN_SPEED = 6.0

# Pendulum.
_PENDULUM_SPIN_SPEED = 9.0

# Reacher.
_REACHER_BIG_TARGET = 0.05
_REACHER_SMALL_TARGET = 0.015


def _at_least(value: float, lower: float, **kwargs: float | str) -> float:
    """``tolerance`` of ``value`` being at least ``lower``."""
    return float(tolerance(value, bounds=(lower, _INF), **kwargs))


def _at_most(value: float, upper: float, **kwargs: float | str) -> float:
    """``tolerance`` of ``value`` being at most ``upper``."""
    return float(tolerance(value, bounds=(-_INF, upper), **kwargs))


def _height(physics: cheetah.Physics, body: str) -> float:
    """Height of a body's frame above the ground."""
    return float(physics.named.data.xpos[body, "z"])


class CheetahRunBackwards(cheetah.Cheetah):
    """Run backwards (towards negative x) as fast as possible."""

    def get_reward(self, physics: cheetah.Physics) -> float:
        """1 at a backward speed of at least 8, falling linearly to 0 at rest."""
        return _at_most(
            physics.speed(),
            -_CHEETAH_BACKWARDS_SPEED,
            margin=_CHEETAH_BACKWARDS_SPEED,
            value_at_margin=0,
            sigmoid="linear",
        )


class CheetahRunOneFoot(cheetah.Cheetah):
    """Run forwards standing on one foot, with the torso and the other foot high."""

    def __init__(self, lifted_foot: str, random: int | None = None) -> None:
        """``lifted_foot`` is the body name of the foot to hold up: "ffoot" or "bfoot"."""
        self._lifted_foot = lifted_foot
        super().__init__(random=random)

    def get_reward(self, physics: cheetah.Physics) -> float:
        """How high the lifted foot and torso are, scaled up by the forward speed."""
        foot_up = _at_least(
            _height(physics, self._lifted_foot), _CHEETAH_HEIGHT, margin=_CHEETAH_HEIGHT_MARGIN
        )
        torso_up = _at_least(
            _height(physics, "torso"), _CHEETAH_HEIGHT, margin=_CHEETAH_HEIGHT_MARGIN
        )
        up = (3 * foot_up + 2 * torso_up) / 5
        run = _at_least(
            physics.speed(),
            _CHEETAH_ONE_FOOT_SPEED,
            margin=_CHEETAH_ONE_FOOT_SPEED,
            sigmoid="linear",
        )
        return up * (5 * run + 1) / 6


class CheetahJump(cheetah.Cheetah):
    """Jump up in place: torso and feet high, little horizontal motion."""

    def get_reward(self, physics: cheetah.Physics) -> float:
        """Mean over the two feet of a height term (weight 5) and a stillness term."""
        still = float(tolerance(abs(physics.speed()), bounds=(0, _CHEETAH_STILL_SPEED)))
        torso = _height(physics, "torso")
        stances = [
            _at_least(
                (torso + _height(physics, foot)) / 2,
                _CHEETAH_HEIGHT,
                margin=_CHEETAH_HEIGHT_MARGIN,
            )
            for foot in _CHEETAH_FEET
        ]
        return float(np.mean([(5 * high + still) / 6 for high in stances]))


class WalkerBackwards(walker.PlanarWalker):
    """Walk or run backwards (towards negative x) while staying upright."""

    def __init__(self, speed: float, random: int | None = None) -> None:
        """``speed`` is the backward speed that earns the full reward."""
        # With move_speed=0 the parent's reward is the standing reward alone.
        super().__init__(move_speed=0, random=random)
        self._speed = speed

    def get_reward(self, physics: walker.Physics) -> float:
        """The suite's standing reward, scaled up by the backward speed."""
        stand = super().get_reward(physics)
        move = _at_most(
            physics.horizontal_velocity(),
            -self._speed,
            margin=self._speed / 2,
            value_at_margin=0.5,
            sigmoid="linear",
        )
        return float(stand * (5 * move + 1) / 6)


class HopperHopBackwards(hopper.Hopper):
    """Hop backwards (towards negative x) while staying upright."""

    def __init__(self, random: int | None = None) -> None:
        """Create the task; ``random`` seeds the initial states."""
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics: hopper.Physics) -> float:
        """Standing tall, times a linear reward for backward speed of at least 1."""
        standing = float(tolerance(physics.height(), bounds=_HOPPER_HEIGHT))
        hopping = _at_most(
            physics.speed(),
            -_HOPPER_BACKWARDS_SPEED,
            margin=_HOPPER_BACKWARDS_SPEED / 2,
            value_at_margin=0.5,
            sigmoid="linear",
        )
        return standing * hopping


class CupSpin(ball_in_cup.BallInCup):
    """Swing the ball out of the cup and spin it fast and far around the cup."""

    def initialize_episode(self, physics: ball_in_cup.Physics) -> None:
        """Start with the ball in the cup with probability 0.9, else as in catch."""
        super().initialize_episode(physics)
        if self.random.uniform() < _CUP_START_INSIDE_PROBABILITY:
            # The ball's slide joints move it along world x and z, so adding
            # the ball-to-target offset puts it at the centre of the cup.
            physics.named.data.qpos[["ball_x", "ball_z"]] += physics.ball_to_target()

    def get_reward(self, physics: ball_in_cup.Physics) -> float:
        """0 with the ball in the cup; else rewards distance from the cup and speed."""
        distance = float(np.linalg.norm(physics.ball_to_target()))
        speed = float(np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]]))
        away = _at_least(distance, _CUP_SPIN_DISTANCE)
        fast = _at_least(speed, _CUP_SPIN_SPEED)
        return (1 - physics.in_target()) * (away + 2 * fast) / 3


class PendulumSpin(pendulum.SwingUp):
    """Spin the pendulum as fast as possible, in either direction."""

    def get_reward(self, physics: pendulum.Physics) -> float:
        """1 at an angular speed of at least 9, falling linearly to 0 at rest."""
        (hinge_velocity,) = physics.angular_velocity()
        return _at_least(
            abs(hinge_velocity),
            _PENDULUM_SPIN_SPEED,
            margin=_PENDULUM_SPIN_SPEED / 2,
            value_at_margin=0.5,
            sigmoid="linear",
        )


def _on_suite_domain(
    domain: str, suite_task: str, make_task: Callable[..., base.Task]
) -> Builder:
    """A builder running ``make_task(random=seed)`` on a suite task's physics.

    The suite task ``domain``/``suite_task`` supplies the physics and the
    control timestep, so both match the standard tasks of the domain.
    """

    def build(seed: int) -> control.Environment:
        suite_env = load_suite_env(domain, suite_task, seed=None)
        return control.Environment(
            suite_env.physics,
            make_task(random=seed),
            time_limit=_INF,
            control_timestep=suite_env.control_timestep(),
        )

    return build


def _three_link_reacher(target_size: float) -> Builder:
    """A builder of the three-link reacher with the given target radius."""

    def build(seed: int) -> control.Environment:
        model = resources.files(__package__).joinpath("assets", "reacher_three.xml").read_text()
        physics = reacher.Physics.from_xml_string(model, common.ASSETS)
        task = reacher.Reacher(target_size=target_size, random=seed)
        return control.Environment(physics, task, time_limit=_INF)

    return build


BUILDERS: dict[str, Builder] = {
    "cheetah-run-backwards": _on_suite_domain("cheetah", "run", CheetahRunBackwards),
    "cheetah-run-front": _on_suite_domain(
        "cheetah", "run", functools.partial(CheetahRunOneFoot, lifted_foot="bfoot")
    ),
    "cheetah-run-back": _on_suite_domain(
        "cheetah", "run", functools.partial(CheetahRunOneFoot, lifted_foot="ffoot")
    ),
    "cheetah-jump": _on_suite_domain("cheetah", "run", CheetahJump),
    "walker-walk-backwards": _on_suite_domain(
        "walker", "walk", functools.partial(WalkerBackwards, speed=_WALKER_WALK_SPEED)
    ),
    "walker-run-backwards": _on_suite_domain(
        "walker", "run", functools.partial(WalkerBackwards, speed=_WALKER_RUN_SPEED)
    ),
    "hopper-hop-backwards": _on_suite_domain("hopper", "hop", HopperHopBackwards),
    "reacher-three-easy": _three_link_reacher(_REACHER_BIG_TARGET),
    "reacher-three-hard": _three_link_reacher(_REACHER_SMALL_TARGET),
    "cup-spin": _on_suite_domain("ball_in_cup", "catch", CupSpin),
    "pendulum-spin": _on_suite_domain("pendulum", "swingup", PendulumSpin),
}
"""Builders of every custom task, by task name."""
