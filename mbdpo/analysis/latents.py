"""2-D pictures of what the world model learned (paper Fig. 11, 24-27): latent trajectories and task embeddings.

- Latent trajectories: the encoded states z_t of evaluation episodes,
  embedded together with locally linear embedding (LLE), coloured by time.
  LLE costs O(n^2) memory, so each episode is subsampled evenly to at most
  ``points`` states in total.
- Task embeddings of a multi-task checkpoint, embedded with t-SNE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.analysis.plots import pyplot, save_figure
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, MBDPOError
from mbdpo.training.evaluate import episode_seed, play_episode

LLE_NEIGHBOURS = 12


def manifold():
    """scikit-learn's manifold module, or a one-line error naming the extra to install."""
    try:
        from sklearn import manifold
    except ImportError:
        raise MBDPOError("latent plots need scikit-learn: pip install 'mbdpo[plot]'") from None
    return manifold


@torch.no_grad()
def episode_latents(agent: Agent, episodes: int, seed: int) -> list[np.ndarray]:
    """Encoded states ``[T+1, L]`` of ``episodes`` evaluation episodes of the agent's task."""
    env = make_env(agent.cfg.task, seed, agent.cfg.obs)
    latents = []
    for index in range(episodes):
        episode = play_episode(agent, env, episode_seed(seed, "eval", index))
        obs = torch.as_tensor(episode.observations, dtype=torch.float32, device=agent.device)
        latents.append(agent.model.encode(obs).cpu().numpy())
    return latents


def subsample(latents: list[np.ndarray], points: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every k-th state of each episode, k chosen so that at most ``points`` remain; with their time steps."""
    stride = max(1, -(-sum(len(z) for z in latents) // points))
    times = [np.arange(0, len(z), stride) for z in latents]
    return [z[t] for z, t in zip(latents, times)], times


def embed_trajectories(latents: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """One LLE fitted on all episodes' states together; returns each episode's ``[T_i, 2]`` coordinates."""
    stacked = np.concatenate(latents)
    if len(stacked) <= LLE_NEIGHBOURS:
        raise ConfigError(f"{len(stacked)} latent states are too few to embed; need more than {LLE_NEIGHBOURS}")
    lle = manifold().LocallyLinearEmbedding(n_neighbors=LLE_NEIGHBOURS, n_components=2, random_state=seed)
    embedded = lle.fit_transform(stacked.astype(np.float64))
    return np.split(embedded, np.cumsum([len(z) for z in latents])[:-1])


def plot_trajectories(embedded: list[np.ndarray], times: list[np.ndarray], task: str, out: Path,
                      overlay: bool) -> list[Path]:
    """Scatter and path of each episode, coloured by time step; one panel each or all in one."""
    plt = pyplot()
    panels = 1 if overlay else len(embedded)
    figure, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4), squeeze=False)
    for index, (points, steps) in enumerate(zip(embedded, times)):
        ax = axes[0, 0 if overlay else index]
        ax.plot(points[:, 0], points[:, 1], color="0.8", linewidth=0.5, zorder=0)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=steps, cmap="viridis", s=6)
        ax.set(title=f"{task}: all episodes" if overlay else f"{task}: episode {index + 1}",
               xlabel="LLE 1", ylabel="LLE 2")
    figure.colorbar(scatter, ax=axes[0].tolist(), label="time step")
    paths = save_figure(figure, out)
    plt.close(figure)
    return paths


def embed_tasks(agent: Agent, seed: int) -> np.ndarray:
    """t-SNE of a multi-task model's task embeddings, ``[num_tasks, 2]``."""
    if agent.model.task_embedding is None:
        raise ConfigError(f"checkpoint of task {agent.cfg.task!r} is single-task: it has no task embeddings to plot")
    weights = agent.model.task_embedding.weight.detach().cpu().numpy().astype(np.float64)
    tsne = manifold().TSNE(n_components=2, perplexity=min(30.0, len(weights) - 1.0), init="pca",
                           random_state=seed)
    return tsne.fit_transform(weights)


def plot_tasks(embedded: np.ndarray, names: list[str], out: Path) -> list[Path]:
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(embedded[:, 0], embedded[:, 1], s=12)
    for (x, y), name in zip(embedded, names):
        ax.annotate(name, (x, y), fontsize=6)
    ax.set(title="task embeddings (t-SNE)")
    paths = save_figure(figure, out)
    plt.close(figure)
    return paths
