"""Multi-task models: action masks, per-task discounts, task embeddings, fine-tuning set-up,
and the offline -> eval -> fine-tune -> collect path of the command line."""

import signal

import numpy as np
import pytest
import torch

from mbdpo.agent import Agent
from mbdpo.config import Config
from mbdpo.checkpoint import save_checkpoint
from mbdpo.data.buffer import Batch
from mbdpo.data.collect import CollectOptions, collect
from mbdpo.data.offline import OfflineDataset
from mbdpo.envs.task_sets import MT30, MT80
from mbdpo.errors import ConfigError
from mbdpo.training.finetune import adapt_state, embedding_parameter_index, finetune_config, related_task
from tests.test_cli import mbdpo_in_process, rows, signal_once_logged

# One worker runs this module, so that its shared run (offline_run, a module fixture) is made once.
pytestmark = pytest.mark.xdist_group("offline_run")


TASKS = ["walker-walk", "cartpole-swingup", "reacher-easy"]  # 6, 1 and 2 actions; padded to 24 obs, 6 actions
TINY = {"model_size": 1, "enc_dim": 32, "mlp_dim": 32, "latent_dim": 16, "batch_size": 16, "num_samples": 16,
        "num_elites": 4, "num_pi_trajs": 2, "diffusion_steps": 2, "energy_negatives": 4, "device": "cpu",
        "score_states": 8}


def tiny_agent(tasks=TASKS, **overrides) -> Agent:
    torch.manual_seed(0)
    return Agent(Config.from_overrides({**TINY, **overrides}).resolve_multitask(tasks), torch.device("cpu"))


@pytest.mark.parametrize("planner, act_mode", [("diffusion", "mc"), ("mppi", "mc"), ("diffusion", "score")])
def test_actions_use_only_the_tasks_action_dimensions(planner, act_mode):
    agent = tiny_agent(planner=planner, act_mode=act_mode)
    if act_mode == "score":
        batch = random_batch(agent, torch.tensor([0, 1, 2, 1] * 4))
        agent.update(batch)  # one score-matching step: the network now counts as trained
        agent.set_acting_mode("score")
    obs = np.random.default_rng(0).normal(size=24).astype(np.float32)
    for task, dims in enumerate([6, 1, 2]):
        agent.reset()
        action = agent.act(obs, explore=True, task=task)
        assert action.shape == (6,) and not action[dims:].any() and action[:dims].any()
    with pytest.raises(ConfigError, match="multi-task"):
        agent.act(obs)


def random_batch(agent: Agent, task: torch.Tensor) -> Batch:
    cfg, size = agent.cfg, len(task)
    action = torch.rand(cfg.horizon, size, cfg.action_dim) * 2 - 1
    return Batch(obs=torch.randn(cfg.horizon + 1, size, cfg.obs_dim), action=action * agent.model.action_mask(task),
                 reward=torch.rand(cfg.horizon, size, 1), terminated=torch.zeros(cfg.horizon, size, 1), task=task)


def test_replay_chains_keep_their_tasks_and_train_the_network_on_them():
    agent = tiny_agent(act_mode="score", score_target="chain", score_replay_chains=8)
    task = torch.tensor([0, 1, 2, 1] * 4)
    agent.update(random_batch(agent, task))
    assert torch.equal(agent.chains.task[:8], task[:8]) and agent.acting_mode == "score"
    obs = np.random.default_rng(0).normal(size=24).astype(np.float32)
    action = agent.act(obs, explore=True, task=1)  # acting with the network: one action dimension
    assert action[:1].any() and not action[1:].any()


def test_an_update_trains_the_embeddings_of_the_batchs_tasks_only():
    agent = tiny_agent()
    before = agent.model.task_embedding.weight.detach().clone()
    agent.update(random_batch(agent, torch.tensor([0, 2] * 8)))
    changed = (agent.model.task_embedding.weight.detach() != before).any(-1)
    assert changed.tolist() == [True, False, True]


def test_policy_samples_are_masked_and_discounts_are_per_task():
    agent = tiny_agent(tasks=list(MT80))
    model = agent.model
    task = torch.tensor([10, 30])  # cartpole-swingup (1 action, 500 steps) and mw-assembly (4 actions, 100 steps)
    action, info = model.pi(model.encode(torch.randn(2, 39), task), task)
    assert not action[0, 1:].any() and not action[1, 4:].any() and action[1, :4].all()
    assert model.discount(task).squeeze(-1).tolist() == pytest.approx([0.99, 0.95])


def test_a_new_task_is_appended_and_starts_from_a_related_embedding():
    agent = tiny_agent(tasks=list(MT30[:3]))  # walker-stand, walker-walk, walker-run
    agent.update(random_batch(agent, torch.tensor([0, 1, 2] * 5 + [0])))
    state = agent.state_dict()
    trained = list(MT30[:3])
    assert related_task("walker-run-backwards", trained, {t: 6 for t in trained}, 6) == "walker-stand"
    cfg, source = finetune_config(agent.cfg, trained, {"task": "cheetah-run", "steps": 100}, init_from="walker-run")
    assert cfg.tasks[-1] == "cheetah-run" and cfg.num_tasks == 4 and cfg.task_dim == agent.cfg.task_dim
    assert (cfg.steps, cfg.eval_freq) == (100, 10)  # evaluations fit the step budget
    grown = Agent(cfg, torch.device("cpu"))
    grown.load_state_dict(adapt_state(state, grown, task=3, source=cfg.tasks.index(source)))
    embedding = grown.model.task_embedding.weight
    assert torch.equal(embedding[3], embedding[2]) and torch.equal(embedding[:3], agent.model.task_embedding.weight)
    moments = grown.optimizer.state_dict()["state"][embedding_parameter_index(grown)]["exp_avg"]
    assert moments.shape == (4, cfg.task_dim) and not moments[3].any()
    grown.update(random_batch(grown, torch.tensor([3] * 16)))  # the new task trains
    with pytest.raises(ConfigError, match="latent_dim= cannot change"):
        finetune_config(agent.cfg, trained, {"task": "cheetah-run", "latent_dim": 64}, "")
    with pytest.raises(ConfigError, match="has 78 observations"):
        finetune_config(agent.cfg, trained, {"task": "quadruped-walk"}, "")


TINY_CLI = [f"{key}={value}" for key, value in TINY.items()] + ["progress=false"]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """A small data set of 3 mt30 tasks (random episodes, written by mbdpo collect) and an offline run on it."""
    root = tmp_path_factory.mktemp("offline")
    for task in TASKS:
        result = mbdpo_in_process("collect", f"task={task}", "policy=random", "episodes=2", f"out={root / 'data'}")
        assert result.returncode == 0, result.stderr
    result = mbdpo_in_process("train", "task=mt30", f"data_dir={root / 'data'}", *TINY_CLI, "steps=300",
                              "eval_freq=300", "log_freq=100", "eval_episodes=1", f"run_dir={root / 'run'}")
    assert result.returncode == 0, result.stderr
    return root


def test_offline_training_lowers_its_losses_and_evaluates_every_task(offline_run):
    assert sorted(p.name for p in (offline_run / "data").glob("chunk_*.pt")) == ["chunk_0.pt", "chunk_1.pt", "chunk_2.pt"]
    trains = rows(offline_run / "run" / "train.csv")
    assert [int(r["step"]) for r in trains] == [100, 200, 300]
    for loss in ("reward_loss", "value_loss", "consistency_loss"):
        assert float(trains[-1][loss]) < float(trains[0][loss]), loss
    evals = rows(offline_run / "run" / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 300]
    for task in TASKS:
        assert float(evals[-1][f"{task}/episode_reward"]) >= 0
    rewards = [float(evals[-1][f"{task}/episode_reward"]) for task in TASKS]
    assert float(evals[-1]["score"]) == pytest.approx(np.mean(rewards) / 10, rel=1e-4)
    checkpoint = torch.load(offline_run / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["trained_tasks"] == ["walker-walk", "reacher-easy", "cartpole-swingup"]  # mt30 order


def test_ctrl_c_stops_offline_training_at_the_update_reached_and_rerunning_continues(offline_run, tmp_path):
    run_dir = tmp_path / "stopped"
    command = ["train", "task=mt30", f"data_dir={offline_run / 'data'}", *TINY_CLI, "eval_freq=100000",
               "log_freq=10", "eval_episodes=1", f"run_dir={run_dir}"]
    stopped = signal_once_logged([*command, "steps=100000"], run_dir / "train.csv", signal.SIGINT)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 10 <= step < 100000 and f"stopped on SIGINT at step {step:,}" in stopped.stderr
    resumed = mbdpo_in_process(*command, f"steps={step + 10}")
    assert resumed.returncode == 0 and f"resuming at update {step:,}" in resumed.stdout, resumed.stderr
    logged = [int(r["step"]) for r in rows(run_dir / "train.csv")]
    assert logged == sorted(set(logged)) and logged[-1] == step + 10  # no update logged twice
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == step + 10


def test_eval_of_a_multitask_checkpoint_prints_a_per_task_table(offline_run):
    result = mbdpo_in_process("eval", f"checkpoint={offline_run / 'run' / 'checkpoint.pt'}", "task=cartpole-swingup",
                              "episodes=1", f"out={offline_run / 'table.csv'}")
    assert result.returncode == 0, result.stderr
    assert "cartpole-swingup" in result.stdout and "normalised score over 1 tasks" in result.stdout
    table = rows(offline_run / "table.csv")
    assert [r["task"] for r in table] == ["cartpole-swingup", "mt30"]
    assert float(table[1]["score"]) == pytest.approx(float(table[0]["mean_reward"]) / 10, rel=1e-3)
    bad = mbdpo_in_process("eval", f"checkpoint={offline_run / 'run' / 'checkpoint.pt'}", "task=cartpole-swingpu")
    assert bad.returncode == 2 and "did you mean 'cartpole-swingup'" in bad.stderr


def test_finetuning_on_a_task_without_data_starts_from_a_related_task(offline_run):
    run_dir = offline_run / "finetune"
    result = mbdpo_in_process("finetune", f"checkpoint={offline_run / 'run' / 'checkpoint.pt'}",
                              "task=pendulum-swingup", "steps=1000", "eval_freq=1000", "eval_episodes=1",
                              "progress=false", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "starts from the task embedding of cartpole-swingup" in result.stdout  # the trained task with 1 action
    trains = rows(run_dir / "train.csv")
    # no seed phase and no burst: one update per step once the first episode is stored
    assert int(trains[0]["updates"]) == 1 and int(trains[1]["updates"]) == 500
    assert float(trains[1]["cross_td_error"]) > 0  # the planner acted from the first step
    assert [int(r["step"]) for r in rows(run_dir / "eval.csv")] == [0, 1000]


def test_finetuning_with_a_distilled_policy_starts_it_untrained_and_trains_it_on_the_tasks_actions(offline_run):
    run_dir = offline_run / "finetune-policy"
    result = mbdpo_in_process("finetune", f"checkpoint={offline_run / 'run' / 'checkpoint.pt'}",
                              "task=cartpole-swingup", "steps=1000", "eval_freq=1000", "eval_episodes=1",
                              "act_mode=auto", "score_target=chain", "score_sampler=policy", "score_states=8",
                              "progress=false", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr  # the checkpoint's score network is left out, not loaded
    agent = Agent.from_checkpoint(run_dir / "checkpoint.pt", device="cpu")
    assert agent.score_network.trained and float(rows(run_dir / "train.csv")[-1]["score_loss"]) > 0
    task = agent.task_tensor(agent.cfg.tasks.index("cartpole-swingup"), 4)
    actions = agent.score_network.actions(agent.model, torch.rand(4, agent.cfg.latent_dim), task)
    assert actions[:, :1].abs().sum() > 0 and not actions[:, 1:].any()  # cartpole's one action, the rest masked


def test_collect_with_a_multitask_checkpoint_writes_padded_public_chunks(offline_run):
    out = offline_run / "collected"
    result = mbdpo_in_process("collect", f"checkpoint={offline_run / 'run' / 'checkpoint.pt'}", "task=cartpole-swingup",
                              "episodes=1", f"out={out}")
    assert result.returncode == 0, result.stderr
    dataset = OfflineDataset(out, obs_dim=24, action_dim=6, num_tasks=30, horizon=3)
    chunk = dataset.chunks[0]
    assert chunk.obs.shape == (1, 501, 24) and not chunk.obs[..., 5:].any() and chunk.obs[..., :5].any()
    assert not chunk.action[:, 1:, 1:].any() and torch.isnan(chunk.action[:, 0]).all()
    assert dataset.tasks() == [MT30.index("cartpole-swingup")]
    refused = mbdpo_in_process("collect", "task=quadruped-walk", "policy=random", "episodes=1", f"out={out}")
    assert refused.returncode == 2 and "is not in mt30" in refused.stderr


def test_offline_training_without_usable_data_is_a_one_line_error(tmp_path):
    missing = mbdpo_in_process("train", "task=mt30", *TINY_CLI)
    assert missing.returncode == 2 and "give data_dir=PATH" in missing.stderr
    empty = mbdpo_in_process("train", "task=mt30", f"data_dir={tmp_path}", *TINY_CLI)
    assert empty.returncode == 2 and "holds no chunk_*.pt files" in empty.stderr
    single = mbdpo_in_process("train", "task=walker-walk", f"data_dir={tmp_path}", *TINY_CLI)
    assert single.returncode == 2 and "data_dir= is for offline multi-task training" in single.stderr


def test_collect_with_a_checkpoint_of_wider_padding_writes_the_sets_padding(tmp_path):
    agent = tiny_agent(tasks=list(MT80))  # pads observations to 39; mt30 files pad to 24
    save_checkpoint(tmp_path / "mt80.pt", {"config": agent.cfg.to_dict(), "agent": agent.state_dict()})
    written = collect(CollectOptions(task="cartpole-swingup", checkpoint=str(tmp_path / "mt80.pt"), episodes=1,
                                     out=str(tmp_path / "data"), device="cpu"))
    assert [p.name for p in written] == ["chunk_0.pt"]
    chunk = OfflineDataset(tmp_path / "data", obs_dim=24, action_dim=6, num_tasks=30, horizon=3).chunks[0]
    assert chunk.obs[..., :5].any() and not chunk.obs[..., 5:].any() and not chunk.action[:, 1:, 1:].any()
