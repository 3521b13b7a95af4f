"""Shared fixtures: tiny simulated datasets collected once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.datasets.collect import CollectConfig, collect

TINY_VIEWS = ("agentview", "robot0_eye_in_hand")
TINY_SIZE = 32


def tiny_config(out: Path, episodes: int = 3, **overrides) -> CollectConfig:
    """A few lift episodes at 32x32: expert, noisy and fail, in seconds."""
    settings = dict(
        task="lift",
        episodes=episodes,
        mix={"expert": 1 / 3, "noisy": 1 / 3, "fail": 1 / 3},
        views=TINY_VIEWS,
        image_size=TINY_SIZE,
        seed=5,
        out=out,
    )
    settings.update(overrides)
    return CollectConfig(**settings)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "lift_tiny"
    collect(tiny_config(out), progress=False)
    return out


class ScriptRun:
    """Runs a Python script in a child process, kill -9s it once `out/latest.json` reaches a step, and reruns it."""

    def __init__(self) -> None:
        import os

        self.env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}

    def kill_at(self, script: str, out: Path, step: int, timeout: float = 240) -> int:
        """Start `script`, SIGKILL it when the run's latest checkpoint is at `step` or later; returns that checkpoint's step."""
        import json
        import os
        import signal
        import subprocess
        import sys
        import time

        process = subprocess.Popen([sys.executable, "-c", script], env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            latest = out / "latest.json"
            if latest.exists() and json.loads(latest.read_text())["step"] >= step:
                break
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return json.loads((out / "latest.json").read_text())["step"]

    def resume(self, script: str, timeout: float = 600):
        """Run `script resume` to the end; returns the CompletedProcess."""
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-c", script, "resume"], env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def script_run() -> ScriptRun:
    return ScriptRun()
