"""`headway demo` end to end on a tiny configuration: every stage runs, caches, and the report is written."""

from __future__ import annotations

import json

import pytest

from headway.demo import DemoConfig, run_demo
from headway.errors import HeadwayError

TINY = {
    "episodes": 3,
    "eval_episodes": 3,
    "reward_steps": 2,
    "keypoint_steps": 2,
    "bc_steps": 2,
    "policy_eval_episodes": 1,
    "rl_steps": 20,
    "rl_eval_every": 20,
    "rl_eval_episodes": 1,
    "rollout_episodes": 1,
    "horizon": 30,
    "image_size": 32,
}


def test_demo_runs_end_to_end_then_skips_finished_stages(tmp_path, capsys):
    config = DemoConfig(task="lift", out=tmp_path / "demo", overrides=TINY)
    result = run_demo(config)
    stages = result["stages"]
    assert "train the stage-aware reward model" in stages
    assert set(stages["evaluate the reward model on held-out episodes"]["metrics"]) >= {"voc", "kendall_tau"}
    assert set(stages["train and evaluate BC, RA-BC and IQL policies"]) - {"seconds"} == {"BC", "RA-BC", "IQL"}
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "Stage-aware reward model on held-out episodes" in report and "data:image/png;base64" in report
    for heading in ("Keypoint model", "Labelled training dataset", "RA-BC", "IQL", "Online RL", "hardware layer"):
        assert heading in report
    assert (tmp_path / "demo" / "labels" / "sarm_progress.parquet").exists()
    assert (tmp_path / "demo" / "report.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "rollout" / "meta" / "info.json").exists()
    assert json.loads((tmp_path / "demo" / "stages.json").read_text())["stages"].keys() == stages.keys()

    capsys.readouterr()
    run_demo(config)
    assert capsys.readouterr().out.count("done earlier, skipped") == len(stages)


def test_demo_refuses_a_folder_from_other_settings(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.json").write_text(json.dumps({"task": "stack", "size": "quick", "settings": {}}))
    with pytest.raises(HeadwayError, match="other settings \\(settings: .*task: 'stack' there, 'lift' now"):
        run_demo(DemoConfig(task="lift", out=tmp_path / "demo", overrides=TINY))
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    (tmp_path / "demo" / "demo.json").unlink()
    with pytest.raises(HeadwayError, match="holds other files"):
        run_demo(DemoConfig(task="lift", out=tmp_path / "demo", overrides=TINY))
