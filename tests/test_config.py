"""Configuration: presets, typed overrides, validation errors."""

import pytest

from mbdpo.config import Config, parse_overrides
from mbdpo.errors import ConfigError


def build(*tokens: str) -> Config:
    return Config.from_overrides(parse_overrides(list(tokens)))


def test_model_size_preset_under_explicit_overrides():
    cfg = build("model_size=5", "mlp_dim=256", "device=cpu")
    assert (cfg.latent_dim, cfg.num_q, cfg.mlp_dim) == (512, 5, 256)


def test_planner_preset_auto_is_cpu_on_cpu_and_explicit_keys_win():
    cfg = build("device=cpu", "num_samples=100")
    assert cfg.planner_preset == "cpu"
    assert (cfg.diffusion_steps, cfg.num_samples, cfg.num_elites) == (20, 100, 8)
    paper = build("device=cpu", "planner_preset=paper")
    assert (paper.diffusion_steps, paper.num_samples) == (20, 512)


def test_each_planner_has_its_own_cpu_preset():
    mppi = build("device=cpu", "planner=mppi")
    diffusion = build("device=cpu", "planner=diffusion")
    assert (mppi.num_samples, mppi.num_elites) == (256, 32)
    assert (diffusion.diffusion_steps, diffusion.num_samples, diffusion.num_elites) == (20, 64, 8)
    assert build("device=cpu", "planner=mppi", "planner_preset=paper").num_samples == 512


def test_types_are_converted():
    cfg = build("steps=1e5", "energy_eta=0", "save_buffer=false", "device=cpu")
    assert cfg.steps == 100_000 and isinstance(cfg.steps, int)
    assert cfg.energy_eta == 0.0 and cfg.save_buffer is False


def test_resolve_derives_environment_fields():
    cfg = build("device=cpu").resolve(obs_dim=5, action_dim=1, episode_length=500)
    assert (cfg.obs_dim, cfg.action_dim, cfg.discount, cfg.seed_steps) == (5, 1, 0.99, 2500)


@pytest.mark.parametrize("tokens, message", [
    (["stpes=10"], "unknown config key 'stpes'; did you mean 'steps'"),
    (["steps=ten"], "steps='ten' is not a valid int"),
    (["planner=cem"], "planner='cem' is not valid; valid: diffusion, mppi"),
    (["model_size=3"], "valid: 1, 5, 19, 48, 317"),
    (["wandb=maybe"], "not a boolean"),
    (["steps"], "not of the form key=value"),
    (["obs_dim=3"], "unknown config key 'obs_dim'"),
])
def test_bad_input_names_the_value_and_the_valid_choices(tokens, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build(*tokens)


def test_range_errors_at_resolution():
    with pytest.raises(ConfigError, match="num_pi_trajs=600"):
        build("device=cpu", "num_pi_trajs=600").resolve(5, 1, 500)
    with pytest.raises(ConfigError, match="latent_dim=100 must be a multiple"):
        build("device=cpu", "latent_dim=100").resolve(5, 1, 500)


def test_a_resumed_run_keeps_its_saved_values_for_the_keys_the_command_does_not_give():
    from mbdpo.training.run_dir import config_differences, kept_from_checkpoint, resumed_config

    # saved by an older mbdpo: other defaults (score_chains), a preset resolved elsewhere, no energy_eta key at all
    saved = {**build("device=cpu", "planner_preset=paper", "steps=5000").to_dict(), "score_chains": 10_000,
             "device": "cuda"}
    del saved["energy_eta"]
    command = build("device=cpu", "steps=8000", "num_samples=64")
    given = {"device", "steps", "num_samples"}
    assert config_differences(saved, command, given) == ["num_samples"]  # 512 (paper preset) against 64
    resumed = resumed_config(saved, command, {"device"})
    assert (resumed.score_chains, resumed.planner_preset, resumed.num_samples) == (10_000, "paper", 512)
    assert (resumed.steps, resumed.device, resumed.energy_eta) == (5000, "cpu", 0.1)  # steps: the run's
    assert resumed_config(saved, command, {"device", "steps"}).steps == 8000
    note = kept_from_checkpoint(resumed, command)
    assert "score_chains=10000" in note and "num_samples=512" in note and "energy_eta" not in note
    assert kept_from_checkpoint(command, command) == ""


def test_settings_resolved_from_the_environment_compare_as_the_run_resolved_them():
    from mbdpo.training.run_dir import config_differences, kept_from_checkpoint, resumed_config

    saved = build("device=cpu", "steps=5000").resolve(5, 1, 500).to_dict()  # seed_steps=0 resolved: 2500
    assert saved["seed_steps"] == 2500
    command = build("device=cpu", "seed_steps=0")
    assert config_differences(saved, command, {"seed_steps"}) == []
    assert config_differences(saved, build("device=cpu", "seed_steps=1000"), {"seed_steps"}) == ["seed_steps"]
    resumed = resumed_config(saved, build("device=cpu"), {"device"})
    assert kept_from_checkpoint(resumed, build("device=cpu")) == "kept from the checkpoint (not given; the " \
                                                                  "command's defaults differ): steps=5000"


def test_a_config_object_gives_the_keys_away_from_their_defaults():
    from mbdpo.training.run_dir import keys_set

    assert keys_set(Config()) == set()
    assert keys_set(Config(steps=7, energy_eta=0.0)) == {"steps", "energy_eta"}
