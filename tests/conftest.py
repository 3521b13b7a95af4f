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
