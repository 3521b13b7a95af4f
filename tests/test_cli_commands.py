"""Each command's flags come from its config dataclasses: every field a flag can carry is one, and
parsing builds the config the hand-written flags built before."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from headway.cli import build_parser, main
from headway.commands import _flag_options, configure_command

# command -> its configs (module, class, flag prefix)
CONFIGS = {
    "sim collect": [("headway.datasets.collect", "CollectConfig", "")],
    "label": [("headway.reward.labelling", "LabelConfig", "")],
    "reward train": [("headway.reward.train", "TrainConfig", "")],
    "keypoints train": [("headway.perception.keypoint_train", "KeypointTrainConfig", "")],
    "policy bc": [("headway.policy.bc", "BCConfig", "")],
    "policy iql": [("headway.policy.iql", "IQLConfig", "")],
    "rl train": [("headway.policy.rl_train", "RLConfig", ""), ("headway.policy.sac", "SACConfig", "")],
    "rl finetune": [
        ("headway.policy.rl_runner", "OnlineRLConfig", ""), ("headway.policy.rl_awr", "AWRConfig", "awr"),
        ("headway.policy.rl_algo", "AgentConfig", "agent"),
    ],
    "rollout": [("headway.hardware.controller", "RolloutConfig", ""), ("headway.hardware.safety", "SafetyConfig", "")],
    "demo": [("headway.demo", "DemoConfig", "")],
}
LIBRARY_ONLY = {"progress", "processes"}  # progress bars and worker processes: set by the library's callers, not by users


def _command_parser(command: str) -> argparse.ArgumentParser:
    words = command.split()
    parser = build_parser()
    configure_command(parser, words)
    for word in words:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


@pytest.mark.parametrize("command", CONFIGS)
def test_every_config_field_a_flag_can_carry_is_a_flag_of_its_command(command):
    dests = {action.dest for action in _command_parser(command)._actions}
    for module, name, prefix in CONFIGS[command]:
        config_class = getattr(importlib.import_module(module), name)
        hints = typing.get_type_hints(config_class)
        wanted = [f.name for f in fields(config_class) if _flag_options(hints[f.name]) is not None and f.name not in LIBRARY_ONLY]
        missing = [field for field in wanted if (f"{prefix}.{field}" if prefix else field) not in dests]
        assert not missing, f"{command}: {name} fields without a flag: {missing}"


@pytest.mark.parametrize(
    "module, name, field, accepted",
    [
        ("headway.datasets.collect", "CollectConfig", "failure_stages", "headway.datasets.collect:FAILURE_STAGES"),
        ("headway.reward.train", "TrainConfig", "prior", "headway.reward.train:PRIORS"),
        ("headway.reward.train", "TrainConfig", "shift_per", "headway.reward.train:SHIFT_PER"),
        ("headway.policy.bc", "BCConfig", "obs", "headway.policy.bc:OBS_MODES"),
        ("headway.policy.bc", "BCConfig", "weights", "headway.policy.bc:WEIGHTINGS"),
        ("headway.policy.bc", "BCConfig", "execution", "headway.policy.bc:EXECUTIONS"),
        ("headway.policy.iql", "IQLConfig", "reward", "headway.policy.iql:REWARDS"),
        ("headway.policy.iql", "IQLConfig", "execution", "headway.policy.bc:EXECUTIONS"),
        ("headway.policy.sac", "SACConfig", "ibrl_q", "headway.policy.sac:IBRL_Q"),
        ("headway.policy.sac", "SACConfig", "actor_update", "headway.policy.sac:ACTOR_UPDATES"),
        ("headway.policy.sac", "SACConfig", "exploration", "headway.policy.sac:EXPLORATIONS"),
    ],
)
def test_a_flags_choices_are_the_values_its_config_accepts(module, name, field, accepted):
    """A Literal annotation gives the flag its choices; it must name what the config validates against."""
    hint = typing.get_type_hints(getattr(importlib.import_module(module), name))[field]
    where, constant = accepted.split(":")
    assert _flag_options(hint)["choices"] == tuple(getattr(importlib.import_module(where), constant))


class _Stop(Exception):
    """Raised by a stand-in for the library call, once it has the config."""


def _config_of(argv: list[str], monkeypatch, module: str, function: str):
    """The config `headway <argv>` hands to `module.function` (its first argument)."""
    seen = []

    def capture(config, *args, **kwargs):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(importlib.import_module(module), function, capture)
    with pytest.raises(_Stop):
        main(argv)
    return seen[0]


def test_sim_collect_builds_the_config_it_built_before(tmp_path, monkeypatch):
    from headway.datasets.collect import DEFAULT_MIX, CollectConfig
    from headway.sim.env import DEFAULT_VIEWS
    from headway.sim.expert import FAILURES

    out = tmp_path / "d"
    argv = ["sim", "collect", "--out", str(out), "--episodes", "7", "--mix", "expert=0.5,noisy=0.3,fail=0.2", "--views", "agentview",
            "--size", "48", "--seed", "3", "--full-render", "--failures", "stall,away", "--failure-stages", "cycle", "--randomize", "camera=2,lighting"]
    assert _config_of(argv, monkeypatch, "headway.datasets.collect", "collect") == CollectConfig(
        task="lift", episodes=7, mix={"expert": 0.5, "noisy": 0.3, "fail": 0.2}, views=("agentview",), image_size=48, seed=3, out=out,
        fast_render=False, failure_kinds=("stall", "away"), failure_stages="cycle", randomize={"camera": 2.0, "lighting": 1.0},
    )
    assert _config_of(["sim", "collect", "--out", str(out)], monkeypatch, "headway.datasets.collect", "collect") == CollectConfig(
        task="lift", episodes=50, mix=dict(DEFAULT_MIX), views=DEFAULT_VIEWS, image_size=84, seed=0, out=out, fast_render=True,
        failure_kinds=FAILURES, failure_stages="random", randomize={},
    )


def test_label_builds_the_config_it_built_before(tmp_path, monkeypatch):
    from headway.reward.labelling import LabelConfig

    argv = ["label", "--dataset", "data/lift", "--model", "lerobot:sarm:m", "--view", "agentview=observation.images.top",
            "--view", "robot0_eye_in_hand=observation.images.wrist", "--episodes", "0-2,5", "--gamma", "0.9", "--chunk-size", "10",
            "--batch-size", "64", "--plots", "2", "--write-dataset", str(tmp_path / "copy"), "--allow-download", "--threads", "1", "--quiet"]
    assert _config_of(argv, monkeypatch, "headway.reward.labelling", "label_dataset") == LabelConfig(
        dataset="data/lift", model="lerobot:sarm:m", out=None,
        views={"agentview": "observation.images.top", "robot0_eye_in_hand": "observation.images.wrist"}, episodes=(0, 1, 2, 5),
        gamma=0.9, chunk_size=10, batch_size=64, device=None, plots=2, write_dataset=tmp_path / "copy", allow_download=True, threads=1,
    )
    assert _config_of(["label", "--dataset", "d", "--model", "m"], monkeypatch, "headway.reward.labelling", "label_dataset") == LabelConfig(
        dataset="d", model="m", out=None, views={}, episodes=None, gamma=0.99, chunk_size=50, batch_size=256, device=None, plots=0,
        write_dataset=None, allow_download=False, threads=None, executor=None, address=None, workers=None, gpus_per_worker=None,
    )


def test_reward_and_keypoint_training_build_the_configs_they_built_before(tmp_path, monkeypatch):
    from headway.perception.keypoint_train import KeypointTrainConfig
    from headway.reward.train import TrainConfig

    for name in ("a", "b"):
        (tmp_path / name / "meta").mkdir(parents=True)
        (tmp_path / name / "meta" / "info.json").write_text("{}")
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    argv = ["reward", "train", "--dataset", str(a), "--dataset", str(b), "--out", str(out), "--views", "agentview", "--size", "64",
            "--rotate", "5", "--linear-targets", "--prior", "equal", "--threads", "2", "--task-text", "lift it"]
    assert _config_of(argv, monkeypatch, "headway.reward.train", "train_reward_model") == TrainConfig(
        datasets=[a, b], out=out, views=("agentview",), image_size=64, rotate_degrees=5.0, linear_if_missing=True, prior="equal",
        threads=2, task_text="lift it",
    )
    assert _config_of(["reward", "train", "--dataset", str(a), "--out", str(out)], monkeypatch, "headway.reward.train", "train_reward_model") == (
        TrainConfig(datasets=[a], out=out, encoder="conv", views=None, image_size=84, steps=3000, linear_if_missing=False, prior="dataset",
                    allow_download=False, feature_cache=None, seed=0, device=None)
    )
    argv = ["keypoints", "train", "--dataset", str(a), "--out", str(out), "--views", "agentview,sideview", "--steps", "5", "--minutes", "1.5",
            "--width", "4"]
    assert _config_of(argv, monkeypatch, "headway.perception.keypoint_train", "train_keypoint_model") == KeypointTrainConfig(
        datasets=[a], out=out, views=("agentview", "sideview"), steps=5, max_minutes=1.5, width=4, seed=0, device=None,
    )


def test_policy_training_builds_the_configs_it_built_before(tmp_path, monkeypatch):
    from headway.policy.bc import BCConfig
    from headway.policy.iql import IQLConfig

    d, out, labels = tmp_path / "d", tmp_path / "out", tmp_path / "labels"
    argv = ["policy", "bc", "--dataset", str(d), "--out", str(out), "--weights", "rabc", "--labels", str(labels), "--obs", "state+images",
            "--views", "agentview", "--size", "32", "--execution", "open_loop", "--chunk", "4", "--lr", "0.01"]
    assert _config_of(argv, monkeypatch, "headway.policy.bc", "train_bc") == BCConfig(
        dataset=d, out=out, weights="rabc", labels=labels, obs="state+images", views=("agentview",), image_size=32, execution="open_loop",
        chunk=4, lr=0.01,
    )
    assert _config_of(["policy", "bc", "--dataset", str(d), "--out", str(out)], monkeypatch, "headway.policy.bc", "train_bc") == BCConfig(
        dataset=d, out=out, obs="state", chunk=10, steps=3000, batch_size=256, lr=1e-3, views=None, image_size=None, weights="none",
        labels=None, execution="ensemble", seed=0, device=None,
    )
    argv = ["policy", "iql", "--dataset", str(d), "--labels", str(labels), "--out", str(out), "--reward", "sparse", "--gamma", "0.95", "--force"]
    assert _config_of(argv, monkeypatch, "headway.policy.iql", "train_iql") == IQLConfig(
        dataset=d, labels=labels, out=out, reward="sparse", expectile=0.7, temperature=1.0, gamma=0.95, chunk=10, steps=3000, batch_size=256,
        model=None, force=True, execution="ensemble", seed=0, device=None,
    )
    with pytest.raises(SystemExit):  # a choice the config does not know is a usage error, as before
        main(["policy", "bc", "--dataset", str(d), "--out", str(out), "--obs", "pixels"])


def test_rl_train_builds_the_config_it_built_before(tmp_path, monkeypatch):
    from headway.policy.rl_train import RLConfig
    from headway.policy.sac import SACConfig

    out = tmp_path / "run"
    argv = ["rl", "train", "--out", str(out), "--steps", "100", "--hidden", "64,64,64", "--actor-update", "awac", "--gamma", "0.9",
            "--pretrain-lr", "0.001", "--utd", "2", "--bc-weight", "0.5", "--critic-pretrain", "5", "--no-critic-layer-norm"]
    assert _config_of(argv, monkeypatch, "headway.policy.rl_train", "train_rl") == RLConfig(
        out=out, steps=100, utd=2, pretrain_lr=1e-3, critic_pretrain=5,
        sac=SACConfig(hidden=(64, 64, 64), actor_update="awac", gamma=0.9, bc_weight=0.5, critic_layer_norm=False),
    )
    assert _config_of(["rl", "train", "--out", str(out)], monkeypatch, "headway.policy.rl_train", "train_rl") == RLConfig(
        task="lift", reward="sparse", shaping=None, init=None, demos=None, steps=50_000, out=out, eval_every=5_000, eval_episodes=10, seed=0,
        horizon=None, batch_size=256, utd=1, success_weight=0.0, pretrain_steps=0, distill_steps=2_000, critic_pretrain=0, pretrain_lr=None,
        device=None, sac=SACConfig(gamma=0.99, bc_weight=0.0, ibrl=False, residual=0.0, actor_update="sac", exploration="learned",
                                   awac_temperature=1.0, init_alpha=0.1, actor_lr=3e-4, hidden=(256, 256)),
    )


def test_rollout_builds_the_config_it_built_before(tmp_path, monkeypatch):
    from headway.hardware.controller import RolloutConfig
    from headway.hardware.safety import SafetyConfig

    required = ["rollout", "--robot", "sim:lift", "--policy", "p", "--reward", "lerobot:sarm:m", "--record", str(tmp_path / "r")]
    argv = [*required, "--episodes", "2", "--fps", "50", "--size", "32", "--margin", "0.05", "--watchdog", "1.5", "--reset", "prompt",
            "--no-video", "--resume", "--max-seconds", "3"]
    assert _config_of(argv, monkeypatch, "headway.hardware.rollout_session", "run_rollouts") == RolloutConfig(
        robot="sim:lift", policy=Path("p"), reward="lerobot:sarm:m", record=tmp_path / "r", episodes=2, fps=50.0, image_size=32,
        safety=SafetyConfig(margin=0.05, watchdog_timeout=1.5), reset="prompt", video=False, resume=True, max_seconds=3.0,
    )
    assert _config_of(required, monkeypatch, "headway.hardware.rollout_session", "run_rollouts") == RolloutConfig(
        robot="sim:lift", robot_config=None, policy=Path("p"), reward="lerobot:sarm:m", episodes=10, fps=20.0, record=tmp_path / "r",
        resume=False, overwrite=False, instruction=None, max_seconds=None, success_threshold=0.5, success_steps=3, stall_seconds=4.0,
        image_size=None, seed=0, safety=SafetyConfig(margin=0.02, watchdog_timeout=0.5), reset=None, video=True, device=None,
    )


def test_demo_builds_the_config_it_built_before(monkeypatch):
    from headway.demo import DemoConfig

    assert _config_of(["demo"], monkeypatch, "headway.demo", "run_demo") == DemoConfig(task="lift", out=Path("runs/demo"), size="quick")
    assert _config_of(["demo", "--full", "--out", "x"], monkeypatch, "headway.demo", "run_demo") == DemoConfig(out=Path("x"), size="full")
    with pytest.raises(SystemExit):
        main(["demo", "--quick", "--full"])


def test_a_new_config_field_is_a_new_flag_with_no_second_edit(tmp_path, monkeypatch):
    import headway.policy.bc as bc

    @dataclass
    class Grown(bc.BCConfig):
        dropout: float = 0.0  # share of units dropped while training

    monkeypatch.setattr(bc, "BCConfig", Grown)
    assert "share of units dropped while training (default: 0.0)" in _command_parser("policy bc").format_help()
    config = _config_of(["policy", "bc", "--dataset", "d", "--out", "o", "--dropout", "0.25"], monkeypatch, "headway.policy.bc", "train_bc")
    assert config == Grown(dataset=Path("d"), out=Path("o"), dropout=0.25)


def test_the_top_level_help_imports_no_config_module():
    code = (
        "import sys; from headway.cli import build_parser; build_parser()\n"
        "print(sorted(m for m in sys.modules if m in ('torch', 'robosuite') or m.startswith(('headway.policy', 'headway.reward', "
        "'headway.datasets', 'headway.hardware', 'headway.perception', 'headway.sim', 'headway.demo'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
