"""mbdpo: Model-Based Diffusion Policy Optimization.

>>> import mbdpo
>>> run_dir = mbdpo.train({"task": "cartpole-swingup", "steps": 20_000, "model_size": 1})
>>> agent = mbdpo.Agent.from_checkpoint(run_dir / "checkpoint.pt")
>>> action = agent.act(observation)
"""

from mbdpo.agent import Agent
from mbdpo.config import Config
from mbdpo.errors import MBDPOError
from mbdpo.training.launch import train

__all__ = ["Agent", "Config", "MBDPOError", "train"]
__version__ = "0.1.0"
