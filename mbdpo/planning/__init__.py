"""Planners behind one interface: ``planner=diffusion`` (MBDPO) and ``planner=mppi`` (TD-MPC2)."""

from mbdpo.config import Config
from mbdpo.model.world_model import WorldModel
from mbdpo.planning.base import Planner
from mbdpo.planning.diffusion import DiffusionPlanner
from mbdpo.planning.distilled_policy import DistilledPolicy
from mbdpo.planning.mppi import MPPIPlanner
from mbdpo.planning.score_network import ScoreNetwork


def make_planner(
    model: WorldModel, cfg: Config, score_network: ScoreNetwork | DistilledPolicy | None = None
) -> Planner:
    """The planner ``cfg.planner``; the diffusion planner can act with ``score_network`` (or the distilled policy)."""
    if cfg.planner == "diffusion":
        return DiffusionPlanner(model, cfg, score_network)
    return MPPIPlanner(model, cfg)


__all__ = ["Planner", "DiffusionPlanner", "DistilledPolicy", "MPPIPlanner", "ScoreNetwork", "make_planner"]
