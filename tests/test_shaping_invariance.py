"""Shaping on small finite MDPs solved exactly by value iteration.

Potential-based shaping (Phi(terminal) = 0) keeps the optimal policy for any potential; the naive
progress delta and KAGI's "dense when the sparse reward is zero" do not (the semantic trap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headway.errors import HeadwayError
from headway.reward.interface import RewardOutput
from headway.reward.shaping import SHAPINGS, PotentialConfig, potential, potential_based_rewards, shaped_rewards


@dataclass
class MDP:
    """P[s, a, s'] transition probabilities, R[s, a, s'] task rewards; terminal states absorb with value 0."""

    P: np.ndarray
    R: np.ndarray
    terminal: np.ndarray  # (S,) bool
    gamma: float

    def shaped(self, shaping: str, phi: np.ndarray) -> MDP:
        """The same MDP with every transition's reward passed through a registered shaping."""
        function = SHAPINGS.get(shaping)
        S, A, _ = self.P.shape
        R = np.zeros_like(self.R)
        for s in range(S):
            for a in range(A):
                for n in range(S):
                    R[s, a, n] = function(self.R[s, a, n], phi[s], phi[n], self.gamma, bool(self.terminal[n]))
        return MDP(self.P, R, self.terminal, self.gamma)


def q_values(mdp: MDP, tolerance: float = 1e-11, max_iterations: int = 100_000) -> np.ndarray:
    """Optimal Q by value iteration: Q(s,a) = sum_s' P (R + gamma V(s') [s' not terminal])."""
    S, A, _ = mdp.P.shape
    V = np.zeros(S)
    expected_reward = (mdp.P * mdp.R).sum(-1)
    continuing = ~mdp.terminal
    for _ in range(max_iterations):
        Q = expected_reward + mdp.gamma * mdp.P @ (V * continuing)
        V_new = np.where(mdp.terminal, 0.0, Q.max(1))
        if np.abs(V_new - V).max() < tolerance:
            return Q
        V = V_new
    raise AssertionError("value iteration did not converge")


def optimal_actions(Q: np.ndarray, gap: float = 1e-6) -> list[frozenset[int]]:
    return [frozenset(np.flatnonzero(row >= row.max() - gap).tolist()) for row in Q]


@st.composite
def random_mdps(draw) -> tuple[MDP, np.ndarray]:
    S = draw(st.integers(2, 6))
    A = draw(st.integers(2, 3))
    gamma = draw(st.floats(0.5, 0.95))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sparse = rng.random((S, A, S)) < draw(st.floats(0.2, 1.0))  # some transitions impossible
    P = rng.random((S, A, S)) * sparse
    P[P.sum(-1) == 0, 0] = 1.0
    P /= P.sum(-1, keepdims=True)
    R = rng.normal(size=(S, A, S)) * (rng.random((S, A, S)) < 0.5)
    terminal = rng.random(S) < 0.3
    terminal[0] = False
    phi = rng.uniform(-5, 5, S) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    return MDP(P, R, terminal, gamma), phi


@settings(max_examples=40, deadline=None)
@given(random_mdps())
def test_potential_based_shaping_keeps_the_optimal_policy_for_any_potential(case):
    mdp, phi = case
    Q = q_values(mdp)
    shaped = q_values(mdp.shaped("pbrs", phi))
    live = ~mdp.terminal
    # Ng et al.: Q'(s, a) = Q(s, a) - Phi(s) exactly, hence the same greedy actions everywhere.
    assert np.allclose(shaped[live] + phi[live, None], Q[live], atol=1e-7)
    assert optimal_actions(shaped[live]) == optimal_actions(Q[live])


@settings(max_examples=20, deadline=None)
@given(random_mdps())
def test_pbrs_without_zeroing_the_terminal_potential_is_not_exact(case):
    """The terminal rule matters: Phi(terminal) != 0 changes Q' by more than a per-state constant."""
    mdp, phi = case
    if not mdp.terminal.any() or np.abs(phi[mdp.terminal]).max() < 1e-3:
        return
    wrong = MDP(mdp.P, mdp.R + mdp.gamma * phi[None, None, :] - phi[:, None, None], mdp.terminal, mdp.gamma)
    Q, shaped = q_values(mdp), q_values(wrong)
    live = ~mdp.terminal
    reaches_terminal = (mdp.P[live][:, :, mdp.terminal].sum(-1) > 1e-3).any()
    if reaches_terminal:
        offsets = shaped[live] + phi[live, None] - Q[live]
        assert not np.allclose(offsets, 0.0, atol=1e-7)


# -- the semantic trap --------------------------------------------------------------------------
# States: 0 start (Phi 0), 1..9 a slow honest climb (Phi 0.1..0.9), 10 goal (terminal, task reward
# 1, Phi 1), 11 a dead end the model scores at 0.95 (e.g. the cube held up but never counted as a
# success) that the robot can sit in forever. Actions: 0 = go on (climb / stay in the dead end),
# 1 = jump to the dead end (only from the start; elsewhere it means go on).
START, GOAL, TRAP = 0, 10, 11


def trap_mdp(gamma: float = 0.9) -> tuple[MDP, np.ndarray]:
    S, A = 12, 2
    P = np.zeros((S, A, S))
    R = np.zeros((S, A, S))
    for s in range(GOAL):
        P[s, :, s + 1] = 1.0
    R[GOAL - 1, :, GOAL] = 1.0
    P[START, 1] = 0.0
    P[START, 1, TRAP] = 1.0
    P[GOAL, :, GOAL] = 1.0
    P[TRAP, :, TRAP] = 1.0
    terminal = np.zeros(S, bool)
    terminal[GOAL] = True
    phi = np.append(np.arange(GOAL + 1) / GOAL, 0.95)
    return MDP(P, R, terminal, gamma), phi


def test_trap_mdp_task_reward_and_pbrs_prefer_finishing():
    mdp, phi = trap_mdp()
    assert optimal_actions(q_values(mdp))[START] == {0}
    assert optimal_actions(q_values(mdp.shaped("pbrs", phi)))[START] == {0}


def test_naive_delta_shaping_pays_for_reaching_high_progress_and_staying_not_for_finishing():
    mdp, phi = trap_mdp()
    Q = q_values(mdp.shaped("delta", phi))
    assert optimal_actions(Q)[START] == {1}  # jumps into the dead end: the task is never done
    # The dead end earns 0.95 at once and nothing after; the honest climb earns 0.1 a step, discounted.
    assert Q[START, 1] == pytest.approx(0.95)
    assert Q[START, 0] == pytest.approx(0.1 * (1 - 0.9**GOAL) / (1 - 0.9))


def test_kagi_dense_when_sparse_is_zero_pays_for_sitting_at_high_progress():
    mdp, phi = trap_mdp(gamma=0.9)
    Q = q_values(mdp.shaped("kagi", phi))
    assert optimal_actions(Q)[START] == {1}
    assert Q[START, 1] == pytest.approx(0.95 / (1 - 0.9))  # 0.95 every step, forever


def test_traps_persist_for_every_discount_close_to_one():
    for gamma in (0.8, 0.9, 0.95, 0.99):
        mdp, phi = trap_mdp(gamma)
        assert optimal_actions(q_values(mdp.shaped("pbrs", phi)))[START] == {0}
        assert optimal_actions(q_values(mdp.shaped("kagi", phi)))[START] == {1}


# -- potentials from a reward model --------------------------------------------------------------
def _output(progress, success, uncertainty) -> RewardOutput:
    progress = np.asarray(progress, dtype=np.float32)
    T = len(progress)
    return RewardOutput(progress, np.zeros(T, int), np.ones((T, 1)), np.asarray(success, np.float32), np.asarray(uncertainty, np.float32))


def test_potential_mixes_progress_success_keypoints_and_uncertainty():
    output = _output([0.0, 0.5, 1.0], [0.0, 0.2, 0.9], [0.1, 0.3, 0.0])
    assert np.allclose(potential(output), [0.0, 0.5, 1.0])  # progress only by default; no penalty
    config = PotentialConfig(progress_weight=0.5, success_weight=2.0, keypoints={"reach": 1.0}, uncertainty_penalty=1.0)
    phi = potential(output, config, extra={"reach": np.array([0.2, 0.1, 0.0])})
    assert np.allclose(phi, [0.0 + 0.0 + 0.2 - 0.1, 0.25 + 0.4 + 0.1 - 0.3, 0.5 + 1.8 + 0.0 - 0.0], atol=1e-6)


def test_potential_rejects_bad_inputs_with_the_fix():
    output = _output([0.0, 0.5], [0.0, 0.1], [0.0, 0.0])
    with pytest.raises(HeadwayError, match="available: none"):
        potential(output, PotentialConfig(keypoints={"grasp": 1.0}))
    with pytest.raises(HeadwayError, match="one value per frame"):
        potential(output, PotentialConfig(keypoints={"grasp": 1.0}), extra={"grasp": np.zeros(3)})
    with pytest.raises(HeadwayError, match="uncertainty_penalty"):
        PotentialConfig(uncertainty_penalty=-1.0)
    with pytest.raises(HeadwayError, match="frame 1"):
        potential(_output([0.0, np.nan], [0.0, 0.0], [0.0, 0.0]))


def test_shaped_rewards_over_an_episode_agree_with_the_pbrs_episode_form():
    phi, rewards = np.array([0.1, 0.4, 0.3, 0.9]), np.array([0.0, 0.0, 0.0, 1.0])
    for terminated in (True, False):
        assert np.allclose(
            shaped_rewards(phi, rewards, 0.9, terminated, "pbrs"), potential_based_rewards(phi, rewards, 0.9, terminated)
        )
    assert np.allclose(shaped_rewards(phi, rewards, 0.9, True, "delta"), [0.3, -0.1, 0.6, -0.9])
    with pytest.raises(HeadwayError, match="valid shapings"):
        shaped_rewards(phi, rewards, 0.9, True, "bogus")
