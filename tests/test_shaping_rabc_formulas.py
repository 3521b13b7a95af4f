"""Potential-based shaping over a stored episode and LeRobot's RA-BC weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.reward.rabc import rabc_weights, normalise_batch_weights, progress_deltas
from headway.reward.shaping import potential_based_rewards


def test_shaped_return_telescopes_to_task_return_minus_initial_potential():
    rng = np.random.default_rng(0)
    phi, rewards, gamma = rng.random(20), rng.random(20), 0.9
    shaped = potential_based_rewards(phi, rewards, gamma, terminated=True)
    discounts = gamma ** np.arange(20)
    assert np.isclose((discounts * shaped).sum(), (discounts * rewards).sum() - phi[0], atol=1e-5)


def test_truncated_episode_gets_no_shaping_on_its_last_transition():
    phi = np.array([0.1, 0.5, 0.9])
    shaped = potential_based_rewards(phi, None, 1.0, terminated=False)
    assert np.allclose(shaped, [0.4, 0.4, 0.0])
    assert np.allclose(potential_based_rewards(phi, None, 1.0, terminated=True), [0.4, 0.4, -0.9])


def test_nan_potential_is_rejected_with_its_frame():
    with pytest.raises(HeadwayError, match="frame 2"):
        potential_based_rewards(np.array([0.0, 0.1, np.nan]))


def test_rabc_weights_match_lerobots_own_class(tmp_path):
    import pandas as pd
    from lerobot.rewards.sarm.rabc import RABCWeights

    rng = np.random.default_rng(1)
    episodes = [np.clip(np.cumsum(rng.normal(0.02, 0.03, n)), 0, 1) for n in (30, 45, 12)]
    rows, index = [], 0
    for episode, progress in enumerate(episodes):
        for frame, value in enumerate(progress):
            rows.append({"index": index, "episode_index": episode, "frame_index": frame, "progress_sparse": value})
            index += 1
    pd.DataFrame(rows).to_parquet(tmp_path / "sarm_progress.parquet")
    theirs = RABCWeights(tmp_path / "sarm_progress.parquet", chunk_size=5, device=torch.device("cpu"))
    ours = np.concatenate(rabc_weights(episodes, chunk_size=5))
    expected = theirs._compute_weights(np.array([theirs._compute_delta(i) for i in range(index)], dtype=np.float32))
    assert np.allclose(ours, expected, atol=1e-5)
    assert 0 < (ours == 0).sum() < len(ours) and (ours == 1).sum() > 0
    batch, _ = theirs.compute_batch_weights({"index": torch.arange(10)})
    assert np.allclose(normalise_batch_weights(ours[:10]), batch.numpy(), atol=1e-4)


def test_progress_delta_clamps_the_future_frame_to_the_episode_end():
    assert np.allclose(progress_deltas(np.array([0.0, 0.2, 0.5, 0.6]), 2), [0.5, 0.4, 0.1, 0.0])


def test_per_transition_pbrs_matches_the_episode_form():
    from headway.reward.shaping import SHAPINGS

    phi, rewards, gamma = np.array([0.1, 0.3, 0.2, 0.8]), np.array([0.0, 0.0, 0.0, 1.0]), 0.95
    episode = potential_based_rewards(phi, rewards, gamma, terminated=True)
    following = list(phi[1:]) + [0.0]
    stepwise = [SHAPINGS.get("pbrs")(r, p, q, gamma, t == 3) for t, (r, p, q) in enumerate(zip(rewards, phi, following))]
    assert np.allclose(episode, stepwise, atol=1e-6)
    assert SHAPINGS.get("delta")(1.0, 0.2, 0.5, gamma, False) == pytest.approx(0.3)
    assert SHAPINGS.get("kagi")(0.0, 0.2, 0.5, gamma, False) == 0.5 and SHAPINGS.get("kagi")(1.0, 0.2, 0.5, gamma, False) == 1.0
