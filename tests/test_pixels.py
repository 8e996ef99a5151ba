"""Image observations (obs=rgb): frames, the convolutional encoder, shift augmentation, uint8 replay, training."""

import numpy as np
import pytest
import torch

from mbdpo.config import Config
from mbdpo.data.buffer import ReplayBuffer
from mbdpo.envs import make_env
from mbdpo.envs.pixels import VISUAL_TASKS
from mbdpo.errors import ConfigError
from mbdpo.model.functional import random_shift
from mbdpo.model.world_model import WorldModel
from tests.test_cli import TINY, mbdpo, rows


@pytest.mark.parametrize("task", VISUAL_TASKS)
def test_every_visual_task_gives_stacked_uint8_frames(task):
    env = make_env(task, seed=0, obs="rgb")
    first, _ = env.reset(seed=2)
    assert first.shape == (9, 64, 64) and first.dtype == np.uint8 and first.std() > 0
    assert np.array_equal(first[:3], first[6:])  # the first frame fills the stack
    assert np.array_equal(first, make_env(task, seed=0, obs="rgb").reset(seed=2)[0])
    obs, *_ = env.step(np.ones(env.action_space.shape, np.float32))
    assert np.array_equal(obs[:6], first[3:])  # frames move one slot back; the newest comes last
    assert not np.array_equal(obs[6:], first[6:])


def test_random_shift_moves_pixels_and_replicates_the_border():
    image = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    assert torch.equal(random_shift(image, pad=3, shifts=torch.tensor([[3, 3]])), image)
    down_right = random_shift(image, pad=3, shifts=torch.tensor([[1, 4]]))  # 2 rows up, 1 column right
    assert torch.equal(down_right[..., 2:, :4], image[..., :3, 1:])
    assert torch.equal(down_right[..., 0, :4], image[..., 0, 1:])  # the top row is replicated
    assert torch.equal(down_right[..., 2:, 4], image[..., :3, 4])  # and so is the right column
    batch = torch.randint(0, 256, (3, 4, 9, 8, 8), dtype=torch.uint8)
    shifted = random_shift(batch)
    assert shifted.shape == batch.shape and shifted.dtype == torch.uint8
    assert sum(not torch.equal(a, b) for a, b in zip(shifted.flatten(0, 1), batch.flatten(0, 1))) > 6


@pytest.mark.parametrize("latent_dim", [512, 128])
def test_the_conv_encoder_maps_frame_stacks_to_simnorm_latents(latent_dim):
    cfg = Config.from_overrides({"device": "cpu", "model_size": 1, "obs": "rgb", "task": "walker-walk",
                                 "latent_dim": latent_dim}).resolve(9, 6, 500)
    model = WorldModel(cfg)
    convolutions = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convolutions] == [
        (7, 2, 32), (5, 2, 32), (3, 2, 32), (3, 1, 32)]
    frames = torch.randint(0, 256, (4, 2, 9, 64, 64), dtype=torch.uint8)
    z = model.encode(frames)
    assert z.shape == (4, 2, latent_dim)
    assert torch.allclose(z.reshape(4, 2, -1, 8).sum(-1), torch.ones(4, 2, latent_dim // 8), atol=1e-5)



def walker_frame_stacks(count: int) -> np.ndarray:
    """``count`` consecutive frame stacks of walker-walk under random actions: real images, alike as a
    task's frames are (the same scene, a moving body)."""
    env = make_env("walker-walk", seed=0, obs="rgb")
    obs, _ = env.reset(seed=0)
    stacks = [obs]
    for _ in range(count - 1):
        obs, *_ = env.step(env.action_space.sample())
        stacks.append(obs)
    env.close()
    return np.stack(stacks)


@pytest.mark.parametrize("latent_dim", [512, 128])
def test_a_new_pixel_encoder_tells_a_tasks_frames_apart(latent_dim):
    """The encoder's latents of a task's frames must differ from the start: a pixel run whose new
    encoder mapped them ~200x closer together collapsed to one latent (benchmarks/pixel_encoder_init.py).
    At 512, SimNorm follows the convolutions, whose He initialisation keeps the frames' spread; at 128, a
    NormedLinear projection's LayerNorm does."""
    torch.manual_seed(0)
    cfg = Config.from_overrides({"device": "cpu", "model_size": 1, "obs": "rgb", "task": "walker-walk",
                                 "latent_dim": latent_dim}).resolve(9, 6, 500)
    model = WorldModel(cfg)
    frames = torch.as_tensor(walker_frame_stacks(20))
    with torch.no_grad():
        spread = float(model.encode(frames).std(0).mean())
        for conv in (m for m in model.encoder if isinstance(m, torch.nn.Conv2d)):
            conv.reset_parameters()  # PyTorch's default
        default_spread = float(model.encode(frames).std(0).mean())
    if latent_dim == 512:
        assert spread > 1e-3 > default_spread  # 9e-3 against 2e-4
    else:
        assert spread > 2e-2  # 4e-3 with a plain linear projection

def test_replay_keeps_frames_as_uint8_and_pixels_are_refused_where_unsupported(tmp_path):
    buffer = ReplayBuffer(100, (9, 64, 64), 2, horizon=3, obs_dtype=np.uint8)
    frames = np.random.default_rng(0).integers(0, 256, (11, 9, 64, 64), dtype=np.uint8)
    buffer.add_episode(frames, np.zeros((10, 2), np.float32), np.zeros(10, np.float32), np.zeros(10, np.float32))
    batch = buffer.sample(4, np.random.default_rng(0), torch.device("cpu"))
    assert batch.obs.shape == (4, 4, 9, 64, 64) and batch.obs.dtype == torch.uint8
    buffer.save(tmp_path / "buffer.npz")
    restored = ReplayBuffer(50, (9, 64, 64), 2, horizon=3, obs_dtype=np.uint8)
    restored.load(tmp_path / "buffer.npz")
    assert np.array_equal(restored.obs[:11], frames)
    for task in ("mw-reach", "mt30", "gym:Pendulum-v1"):
        with pytest.raises(ConfigError, match=f"obs=rgb is for single DMControl tasks .*not task={task}"):
            Config.from_overrides({"device": "cpu", "obs": "rgb", "task": task}).resolve(9, 6, 500)


@pytest.mark.slow
def test_a_short_run_from_pixels_evaluates(tmp_path):
    # One 500-step episode; a batch of 4 windows keeps the convolutions cheap on a CPU.
    result = mbdpo("train", *TINY, "task=cartpole-balance", "obs=rgb", "steps=500", "seed_steps=100",
                   "batch_size=4", "energy_negatives=2", "eval_freq=500", f"run_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    evals = rows(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 500] and all(float(r["episode_reward"]) > 0 for r in evals)
    assert '"obs": "rgb"' in (tmp_path / "config.json").read_text()
