"""Planners behind one interface: ``planner=diffusion`` (MBDPO) and ``planner=mppi`` (TD-MPC2)."""

from mbdpo.config import Config
from mbdpo.model.world_model import WorldModel
from mbdpo.planning.base import Planner
from mbdpo.planning.diffusion import DiffusionPlanner
from mbdpo.planning.mppi import MPPIPlanner

PLANNERS: dict[str, type[Planner]] = {"diffusion": DiffusionPlanner, "mppi": MPPIPlanner}


def make_planner(model: WorldModel, cfg: Config) -> Planner:
    return PLANNERS[cfg.planner](model, cfg)


__all__ = ["Planner", "DiffusionPlanner", "MPPIPlanner", "make_planner", "PLANNERS"]
