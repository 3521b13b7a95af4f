"""Advantage-weighted fine-tuning of a BC policy's own network (AWR, Peng et al. 2019), read top to bottom.

The start policy is not copied into another actor: its network (action chunks, temporal ensembling
and all) is the one that acts and the one that learns, so step 0 is the init policy exactly. The
runner (headway/policy/rl_runner.py, `method="awr"`) collects episodes with Gaussian noise on the executed
actions and hands each finished episode to `AWRLearner.add_episode`; `AWRLearner.update` then
1. fits a value function V(s, Phi) on lambda-returns of the (shaped) reward. The potential Phi is an
   input, so V can represent V_shaped = V - Phi even when Phi depends on a reward model's frame window;
2. computes GAE(lambda) advantages of every stored step with the current V and keeps the steps with
   A > 0 ("positive": only better-than-expected behaviour is imitated) or weights them by
   exp(A / (beta * std(A))) clipped ("exp"); either way the step does not depend on the reward's scale;
3. moves the policy. The default (`refit_every=1`, `successes_only`) is self-imitation by re-cloning:
   whenever a training episode has succeeded, the policy is cloned afresh (BC's own recipe, new
   weights) from the start's demonstrations (`demo_ratio` of the total weight) plus the kept steps of
   every successful online episode; with no new success nothing moves, and after `refit_patience`
   failures in a row the clone is drawn again. Without `refit_every`, gradient steps regress the
   current network's chunk at s_t onto the executed actions a_t .. a_t+H-1 with those weights.

Why re-cloning: with a few demonstrations, BC's success grows fast with data, while gradient steps
on a handful of online episodes drift (measurements in docs/rl.md). A process reward helps twice: within successes the shaped advantage keeps
the steps that made progress, and the runner's early reset (a stalled potential ends a training
episode) spends fewer env steps on attempts that have already failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from headway.errors import HeadwayError
from headway.policy.bc import clone_steps, per_sample_loss
from headway.policy.bc_data import action_chunks
from headway.policy.rl_algo import Normaliser

WEIGHTINGS = ("exp", "positive")
BASELINES = ("value", "potential")


@dataclass
class AWRConfig:
    noise: float = 0.05  # std of the Gaussian noise on executed actions (training episodes only)
    # AR(1) coefficient of that noise within an episode: 0 is white noise; rho keeps each perturbation for about
    # 1 / (1 - rho) steps at the same per-step std, so an attempt drifts to a different grasp instead of jittering
    noise_correlation: float = 0.0
    # a failed training episode's start (its env seed) is tried again, with fresh noise, up to this many times
    # before a new start is drawn, so exploration dwells on the starts the policy cannot do yet; 0: every episode a new start
    retries: int = 0
    gamma: float = 0.99
    lam: float = 0.95  # GAE lambda
    weighting: str = "positive"  # exp: exp(A / (beta * std A)) clipped | positive: 1 where A > 0, else 0 (CRR's binary filter, self-imitation)
    beta: float = 1.0  # temperature of "exp", in units of the advantages' standard deviation
    max_weight: float = 20.0
    updates_per_episode: int = 50  # value and policy gradient steps per finished training episode
    batch_size: int = 256
    policy_lr: float = 1e-4
    value_lr: float = 3e-4
    # the init's own demonstrations' share of each re-cloning's total weight (without `refit_every`: of each
    # gradient batch, at weight 1), so a few noisy online successes do not outweigh the expert (docs/rl.md)
    demo_ratio: float = 0.5
    hidden: int = 256
    # value: GAE(lambda) against a learned V(s, Phi) | potential: no value function; the advantage is the
    # shaped Monte Carlo return, in which the potential itself is the baseline (under pbrs,
    # A_t = sum_k gamma^k r_t+k + gamma^(T-t) Phi_T - Phi_t; under a sparse reward, the discounted success)
    baseline: str = "value"
    # the value function sees the potential Phi (the reward model's, which depends on its frame window) as an
    # input, so V can represent the shaped value V - Phi; False: V(s) from the state alone (docs/rl.md)
    value_sees_potential: bool = True
    margin: float = 0.0  # "positive" imitates steps with A > margin
    # 0: `updates_per_episode` gradient steps on the current network after every episode. N > 0: every N
    # episodes, clone the policy afresh (new weights, BC's own recipe: `refit_steps` AdamW steps at
    # `refit_lr` decayed to a tenth) from the start's demonstrations plus the weighted online steps;
    # nothing accumulates in the weights, so a few lucky episodes cannot drag the policy off (docs/rl.md)
    refit_every: int = 1
    refit_steps: int = 600
    refit_lr: float = 1e-3
    # fresh: new random weights at every re-cloning | current: continue from the policy's current weights
    # (consecutive policies stay close, but on lift it learned far less: docs/rl.md)
    refit_from: Literal["fresh", "current"] = "fresh"
    # imitate only steps of episodes that succeeded (self-imitation with the advantage filter inside them);
    # with `refit_every`, a re-cloning then waits for a new successful episode, so no data, no new draw
    successes_only: bool = True
    # with `refit_every` and `successes_only`: also re-clone (a new draw on the same data) once the current
    # policy has failed this many training episodes in a row, so an unlucky clone does not stall data collection; 0: off
    refit_patience: int = 6
    # > 0 (with `successes_only`): a failed training episode whose potential peaked at or above this value
    # is imitated too, up to that peak (advantage filter inside), and counts as new data for a re-cloning.
    # A stage-aware potential says how far the attempt got (e.g. the cube carried over the target), which a
    # sparse reward cannot; set it at a stage after the grasp, since imitating approaches that fail to
    # grasp took lift to 0; on stack it gained nothing with the reward model's or the true potential (docs/rl.md). 0: off
    failure_peak: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise <= 1.0:
            raise HeadwayError(f"exploration noise must be in [0, 1] (actions live in [-1, 1]), got {self.noise}")
        if not 0.0 <= self.noise_correlation < 1.0:
            raise HeadwayError(f"noise correlation (AR(1) coefficient) must be in [0, 1), got {self.noise_correlation}")
        if self.retries < 0:
            raise HeadwayError(f"retries of a failed start must be >= 0, got {self.retries}")
        if not 0.0 <= self.gamma < 1.0 or not 0.0 <= self.lam <= 1.0:
            raise HeadwayError(f"gamma must be in [0, 1) and lambda in [0, 1], got {self.gamma}, {self.lam}")
        if self.weighting not in WEIGHTINGS:
            raise HeadwayError(f"unknown advantage weighting {self.weighting!r}; valid: {', '.join(WEIGHTINGS)}")
        if not self.beta > 0 or not self.max_weight >= 1.0:
            raise HeadwayError(f"beta must be > 0 and max weight >= 1, got {self.beta}, {self.max_weight}")
        if not 1 <= self.updates_per_episode <= 1000 or self.batch_size < 1 or self.hidden < 1:
            raise HeadwayError("updates per episode must be in [1, 1000]; batch size and hidden width >= 1")
        if not (self.policy_lr > 0 and self.value_lr > 0):
            raise HeadwayError("learning rates must be positive")
        if self.baseline not in BASELINES:
            raise HeadwayError(f"unknown advantage baseline {self.baseline!r}; valid: {', '.join(BASELINES)}")
        if self.margin < 0.0:
            raise HeadwayError(f"the advantage margin must be >= 0, got {self.margin}")
        if self.refit_every < 0 or self.refit_steps < 1 or not self.refit_lr > 0:
            raise HeadwayError("refit every must be >= 0 episodes, refit steps >= 1 and the refit learning rate positive")
        if not 0.0 <= self.demo_ratio < 1.0:
            raise HeadwayError(f"demo ratio must be in [0, 1), got {self.demo_ratio}")
        if self.refit_patience < 0:
            raise HeadwayError(f"refit patience must be >= 0 episodes, got {self.refit_patience}")
        if self.refit_from not in ("fresh", "current"):
            raise HeadwayError(f"refit-from must be fresh or current, got {self.refit_from!r}")
        if self.failure_peak < 0.0 or (self.failure_peak > 0.0 and not self.successes_only):
            raise HeadwayError(f"failure peak must be >= 0 and needs successes_only (it adds failures to the imitated successes), got {self.failure_peak}")


# -- 1. the value function ---------------------------------------------------------------------
class ValueNet(nn.Module):
    """V(s, Phi): LayerNorm MLP on the normalised state with the potential as one more input
    (held at 0 when it must not see it)."""

    def __init__(self, obs_dim: int, hidden: int, sees_potential: bool = True) -> None:
        super().__init__()
        self.sees_potential = sees_potential
        self.normaliser = Normaliser(obs_dim)
        self.net = nn.Sequential(
            nn.Linear(obs_dim + 1, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, obs: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        phi = phi if self.sees_potential else torch.zeros_like(phi)
        return self.net(torch.cat([self.normaliser(obs), phi[:, None]], dim=-1))[:, 0]


# -- 2. advantages ---------------------------------------------------------------------------------
def gae(rewards: np.ndarray, values: np.ndarray, terminated: bool, gamma: float, lam: float) -> np.ndarray:
    """GAE(lambda) of one episode: `values` has T + 1 entries (the last is V of the final observation,
    used only when the episode was truncated, not terminated)."""
    length = len(rewards)
    next_values = values[1:].copy()
    if terminated:
        next_values[-1] = 0.0
    deltas = rewards + gamma * next_values - values[:length]
    advantages = np.zeros(length)
    running = 0.0
    for t in reversed(range(length)):
        running = deltas[t] + gamma * lam * running
        advantages[t] = running
    return advantages


def awr_weights(advantages: np.ndarray, beta: float, max_weight: float, weighting: str = "exp", margin: float = 0.0) -> np.ndarray:
    """exp(A / (beta * std(A))), clipped, all ones when every advantage is equal ("exp"); or 1 where
    A > margin and 0 elsewhere ("positive": only better-than-expected behaviour is imitated)."""
    if weighting == "positive":
        return (advantages > margin).astype(np.float64)
    scale = float(np.std(advantages))
    if scale < 1e-8:
        return np.ones_like(advantages)
    return np.minimum(np.exp(np.clip(advantages / (beta * scale), -50.0, 50.0)), max_weight)


# -- 3. the learner --------------------------------------------------------------------------------
@dataclass
class Episode:
    obs: np.ndarray  # (T + 1, O) state then object state, including the final observation; the
    # policy reads its first `net.state_dim` columns (state, plus object state if it was cloned with it)
    phi: np.ndarray  # (T + 1,) potential of each observation
    actions: np.ndarray  # (T, A) executed actions
    rewards: np.ndarray  # (T,) the reward the learner optimises (shaped where shaping is on)
    terminated: bool
    success: bool = False


class AWRLearner:
    """Owns the policy network being fine-tuned, the value function, and the online episodes."""

    def __init__(self, net, obs_dim: int, config: AWRConfig, demos, seed: int = 0, device="cpu") -> None:
        """`net` is a BCNet (headway.policy.bc), trained in place; `demos` its BCSamples anchor (or None)."""
        self.net, self.config, self.device = net, config, torch.device(device)
        self.value = ValueNet(obs_dim, config.hidden, config.value_sees_potential).to(self.device)
        self.policy_opt = torch.optim.Adam(net.parameters(), lr=config.policy_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=config.value_lr)
        self.episodes: list[Episode] = []
        self.rng = np.random.default_rng(seed)
        self.demos = None
        if demos is not None:
            width = net.state_dim
            self.demos = {
                "state": torch.from_numpy(demos.state[:, :width]).to(self.device),
                "actions": net.normalise_actions(torch.from_numpy(demos.actions).to(self.device)),
                "mask": torch.from_numpy(demos.action_mask).to(self.device).float(),
            }
        if config.refit_every and self.demos is None:
            raise HeadwayError("re-cloning (refit_every > 0) needs the start's demonstrations: an init BC checkpoint that names its dataset, or --demos")
        self.last: dict[str, float] = {}
        self.refit_mark = (0, 0)  # (episodes, successful episodes) at the last re-cloning

    def fit_normaliser(self, observations: np.ndarray) -> None:
        self.value.normaliser.fit(observations)

    def add_episode(self, episode: Episode) -> None:
        if len(episode.actions) == 0:
            return
        self.episodes.append(episode)

    # the three steps of one update, each over all stored episodes
    @torch.no_grad()
    def _advantages(self, all_obs: torch.Tensor, all_phi: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """GAE and lambda-returns of every stored step, from one pass of V over every observation (with the
        potential as baseline: V = 0 and lambda = 1, so both are the shaped Monte Carlo return)."""
        lengths = np.cumsum([len(e.obs) for e in self.episodes])[:-1]
        if self.config.baseline == "potential":
            values, lam = np.split(np.zeros(len(all_obs)), lengths), 1.0
        else:
            values, lam = np.split(self.value(all_obs, all_phi).cpu().numpy().astype(np.float64), lengths), self.config.lam
        advantages = [gae(e.rewards, v, e.terminated, self.config.gamma, lam) for e, v in zip(self.episodes, values)]
        return np.concatenate(advantages), np.concatenate([a + v[:-1] for a, v in zip(advantages, values)])

    def _flat(self) -> dict[str, torch.Tensor]:
        chunk = self.net.chunk
        targets, masks = zip(*(action_chunks(e.actions, chunk) for e in self.episodes))
        cat = lambda xs: torch.from_numpy(np.concatenate(xs)).to(self.device)  # noqa: E731
        obs = cat([e.obs[:-1] for e in self.episodes]).float()
        return {
            "policy_in": obs[:, : self.net.state_dim],
            "obs": obs,
            "all_obs": cat([e.obs for e in self.episodes]).float(),
            "all_phi": cat([e.phi for e in self.episodes]).float(),
            "phi": cat([e.phi[:-1] for e in self.episodes]).float(),
            "actions": self.net.normalise_actions(cat(list(targets)).float()),
            "mask": cat(list(masks)).float(),
        }

    def _imitated(self, episode: Episode) -> np.ndarray:
        """Which steps of `episode` may be imitated under `successes_only`: all of a success; of a failure whose
        potential peaked at or above `failure_peak`, those before the peak; none of other failures."""
        if episode.success:
            return np.ones(len(episode.actions))
        peak = int(np.argmax(episode.phi))
        if self.config.failure_peak <= 0.0 or episode.phi[peak] < self.config.failure_peak:
            return np.zeros(len(episode.actions))
        return (np.arange(len(episode.actions)) < peak).astype(np.float64)

    def _take_due_refit(self) -> bool:
        """Whether a re-cloning is due, marking it taken if so: `refit_every` episodes since the last one (and,
        with `successes_only`, a new episode to imitate, or `refit_patience` failed episodes in a row since it)."""
        config = self.config
        episodes, successes = len(self.episodes), sum(bool(self._imitated(e).any()) for e in self.episodes)
        since = episodes - self.refit_mark[0]
        new_data = since >= config.refit_every and (not config.successes_only or successes > self.refit_mark[1])
        stuck = config.successes_only and config.refit_patience > 0 and since >= config.refit_patience and successes == self.refit_mark[1]
        if not (new_data or stuck):
            return False
        self.refit_mark = (episodes, successes)
        return True

    def update(self, steps: int) -> dict[str, float]:
        """`steps` value and policy gradient steps on everything collected so far (with `refit_every`,
        a re-cloning when one is due, else nothing); `policy_steps` says how many."""
        if not self.episodes or (self.config.refit_every and not self._take_due_refit()):
            return {"policy_steps": 0}
        config, data = self.config, self._flat()
        n = len(data["obs"])
        value_loss = float("nan")
        _, returns = self._advantages(data["all_obs"], data["all_phi"])
        target = torch.from_numpy(returns).float().to(self.device)
        self.value.train()
        for _ in range(steps if config.baseline == "value" else 0):
            index = torch.from_numpy(self.rng.integers(0, n, min(config.batch_size, n))).to(self.device)
            loss = ((self.value(data["obs"][index], data["phi"][index]) - target[index]) ** 2).mean()
            self.value_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.value.parameters(), 10.0)
            self.value_opt.step()
            value_loss = float(loss.detach())
        advantages, _ = self._advantages(data["all_obs"], data["all_phi"])
        weights = awr_weights(advantages, config.beta, config.max_weight, config.weighting, config.margin)
        if config.successes_only:
            weights = weights * np.concatenate([self._imitated(e) for e in self.episodes])
        weights = torch.from_numpy(weights).float().to(self.device)
        if config.refit_every:
            loss, steps = self._refit(data, weights), config.refit_steps
        else:
            loss = self._gradient_steps(data, weights, steps)
        self.last = {"value_loss": value_loss, "policy_loss": loss, "mean_weight": float(weights.mean()),
                     "advantage_std": float(np.std(advantages)), "policy_steps": steps}
        return self.last

    def _gradient_steps(self, data: dict[str, torch.Tensor], weights: torch.Tensor, steps: int) -> float:
        config = self.config
        n = len(data["obs"])
        online_size = max(1, int(round(config.batch_size * (1.0 - config.demo_ratio)))) if self.demos is not None else config.batch_size
        self.net.train()
        for _ in range(steps):
            index = torch.from_numpy(self.rng.integers(0, n, online_size)).to(self.device)
            prediction = self.net(data["policy_in"][index] if self.net.state_dim else None)
            losses = per_sample_loss(prediction, data["actions"][index], data["mask"][index]) * weights[index]
            if self.demos is not None:
                d = torch.from_numpy(self.rng.integers(0, len(self.demos["state"]), config.batch_size - online_size)).to(self.device)
                demo_losses = per_sample_loss(self.net(self.demos["state"][d]), self.demos["actions"][d], self.demos["mask"][d])
                losses = torch.cat([losses, demo_losses])
            loss = losses.mean()
            self.policy_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
            self.policy_opt.step()
        self.net.eval()
        return float(loss.detach())

    def _refit(self, data: dict[str, torch.Tensor], weights: torch.Tensor) -> float:
        """Fresh (or the current) weights, then BC's recipe on the demonstrations (weight 1) and the online steps with weight > 0."""
        keep = weights > 0
        state = torch.cat([self.demos["state"], data["policy_in"][keep]])
        demo_weight = 1.0
        if self.config.demo_ratio > 0 and bool(keep.any()):  # the demonstrations carry that share of the total weight
            demo_weight = self.config.demo_ratio / (1.0 - self.config.demo_ratio) * float(weights[keep].sum()) / len(self.demos["state"])
        sample_weights = torch.cat([torch.full((len(self.demos["state"]),), demo_weight, device=self.device), weights[keep]])
        torch.manual_seed(int(self.rng.integers(2**31)))
        for module in self.net.modules() if self.config.refit_from == "fresh" else ():
            if module is not self.net and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        losses = clone_steps(self.net, state if self.net.state_dim else None, torch.cat([self.demos["actions"], data["actions"][keep]]),
                             torch.cat([self.demos["mask"], data["mask"][keep]]), None if bool((sample_weights == 1).all()) else sample_weights,
                             self.config.refit_steps, self.config.refit_lr, 1e-4, self.config.batch_size, self.rng)
        return float(np.mean(losses[-50:]))

    # checkpoints
    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "value": self.value.state_dict(), "policy_opt": self.policy_opt.state_dict(),
                "value_opt": self.value_opt.state_dict(), "rng": self.rng.bit_generator.state, "last": self.last, "refit_mark": list(self.refit_mark)}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.value.load_state_dict(state["value"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.rng.bit_generator.state = state["rng"]
        self.last = state["last"]
        self.refit_mark = tuple(state.get("refit_mark", (0, 0)))

    def episodes_state(self) -> dict[str, np.ndarray]:
        """The online episodes as flat arrays with lengths (for replay.npz)."""
        es = self.episodes
        if not es:
            return {"lengths": np.zeros(0, np.int64)}
        return {
            "lengths": np.array([len(e.actions) for e in es], np.int64), "terminated": np.array([e.terminated for e in es]),
            "success": np.array([e.success for e in es]),
            "obs": np.concatenate([e.obs for e in es]),
            "phi": np.concatenate([e.phi for e in es]), "actions": np.concatenate([e.actions for e in es]),
            "rewards": np.concatenate([e.rewards for e in es]),
        }

    def load_episodes(self, state: dict[str, np.ndarray]) -> None:
        self.episodes = episodes_from_arrays(state)


def episodes_from_arrays(state: dict[str, np.ndarray]) -> list[Episode]:
    """The episodes of `AWRLearner.episodes_state`'s flat arrays (a checkpoint's replay.npz); each episode
    stores one more observation and potential than actions."""
    episodes, start = [], 0
    for k, length in enumerate(state["lengths"].tolist()):
        end = start + length
        episodes.append(Episode(
            obs=state["obs"][start + k : end + k + 1], phi=state["phi"][start + k : end + k + 1],
            actions=state["actions"][start:end], rewards=state["rewards"][start:end], terminated=bool(state["terminated"][k]),
            success=bool(state["success"][k]) if "success" in state else False,
        ))
        start = end
    return episodes
