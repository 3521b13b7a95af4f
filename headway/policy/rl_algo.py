"""Online RL that acts through a frozen headway policy: IBRL selection on an RLPD-style critic ensemble.

Read top to bottom; the runner (headway/policy/rl_runner.py) owns envs, rewards, evaluation, checkpoints
and logs, and calls only `Agent.act`, `Agent.update`, `NStep` and `Buffer` from here.

The recipe, each piece against a cause diagnosed in issue 25:
1. No entropy term anywhere. The RL actor is deterministic (TD3-style) and explores with fixed
   Gaussian noise, so the TD backup is r + gamma^n Q and nothing else (the clone's log pi of
   about +25 no longer swamps a reward of +0.02 per step).
2. Robust normalisation: fixed demonstration statistics with a std floor of `STD_FLOOR` and inputs
   clamped to +-`CLAMP` standard deviations; LayerNorm in actor and critics.
3. The start policy is never re-fitted. The headway policy (BC, RA-BC, chunked with temporal
   ensembling, anything with `act`) stays frozen as the reference; the agent executes, per state,
   the better by Q of the reference's action and the RL actor's (IBRL, Hu et al. 2023), and the TD
   target bootstraps through the better of the two next actions. Before the actor has trained
   (critic warm-up, WSRL-style: the reference acts and the critics learn its values) the agent is
   exactly the reference, so the first evaluation equals the init policy's own success.
4. Critics: an ensemble of `critics` LayerNorm MLPs (one batched module); targets take the minimum
   over a random subset of `target_subset` of them (RLPD's random pair), n-step returns, a
   configurable UTD ratio, 50/50 demonstration / online batches.
5. The actor's objective is scale-free: -Q divided by a running mean absolute deviation of the TD
   targets, plus `bc_weight` * ||pi(s) - a_ref(s)||^2. Multiplying the reward by any c > 0 leaves
   the actor's gradient unchanged, so the cloning term weighs the same under pbrs as under sparse.
6. The potential is visible to the critic: Q(s, a, Phi) = f(s, a) + w * Phi with a learned w per
   critic (`critic_potential = "additive"`). A reward model's Phi depends on its frame window, not
   only on the state; Q_shaped = Q - Phi(h) (Ng et al.), so with Phi as an input the shaped target is
   a function of the critic's inputs. Additive, it cancels when two actions of one state are
   compared, so acting and evaluation need no rendering.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headway.errors import HeadwayError

STD_FLOOR = 0.05  # observation std floor, in the observation's units (quaternion dims vary ~1e-3)
CLAMP = 5.0  # normalised inputs are clamped to +- this many floored standard deviations
MAX_CRITICS, MAX_UTD = 20, 32
CRITIC_POTENTIALS = ("none", "additive")


@dataclass
class AgentConfig:
    hidden: tuple[int, ...] = (256, 256)
    critics: int = 5  # ensemble size (IBRL 5, RLPD 10)
    target_subset: int = 2  # targets: min over this many randomly chosen target critics
    gamma: float = 0.99
    n_step: int = 3
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    noise: float = 0.1  # exploration noise on the executed action (training only)
    target_noise: float = 0.2  # TD3 target smoothing of the actor's next action
    target_noise_clip: float = 0.5
    bc_weight: float = 0.0  # ||pi(s) - a_ref(s)||^2 weight (the Q term is scale-free, see module doc)
    actor_every: int = 2  # TD3's delayed actor updates
    ibrl: bool = True  # select between reference and actor by Q; False: the actor alone (after warm-up)
    critic_potential: str = "additive"  # none | additive (Q + w * Phi, see module doc)
    # when the RL candidate replaces the reference's action: "agree" (every critic values it above every
    # critic's value of the reference's: the ensemble must agree), "min" (min over critics, IBRL), "mean"
    select: str = "agree"
    residual: float = 0.3  # > 0: the RL action is clip(a_ref + residual * actor(s)), a bounded correction that starts at 0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise HeadwayError(f"hidden layer sizes must be positive, got {self.hidden}")
        if not 2 <= self.critics <= MAX_CRITICS:
            raise HeadwayError(f"critic ensemble size must be in [2, {MAX_CRITICS}], got {self.critics}")
        if not 1 <= self.target_subset <= self.critics:
            raise HeadwayError(f"target subset must be in [1, critics={self.critics}], got {self.target_subset}")
        if not 0.0 <= self.gamma < 1.0:
            raise HeadwayError(f"gamma must be in [0, 1), got {self.gamma}")
        if not 1 <= self.n_step <= 20:
            raise HeadwayError(f"n-step must be in [1, 20], got {self.n_step}")
        if not 0.0 < self.tau <= 1.0:
            raise HeadwayError(f"tau must be in (0, 1], got {self.tau}")
        if self.noise < 0 or self.target_noise < 0 or self.bc_weight < 0:
            raise HeadwayError("noise, target noise and bc weight must be >= 0")
        if self.actor_every < 1:
            raise HeadwayError(f"actor-every must be at least 1, got {self.actor_every}")
        if not 0.0 <= self.residual <= 2.0:
            raise HeadwayError(f"residual must be in [0, 2] (0: off), got {self.residual}")
        if self.select not in ("agree", "min", "mean"):
            raise HeadwayError(f"select must be agree, min or mean, got {self.select!r}")
        if self.critic_potential not in CRITIC_POTENTIALS:
            raise HeadwayError(f"critic potential must be one of {', '.join(CRITIC_POTENTIALS)}, got {self.critic_potential!r}")


# -- 1. normalisation ---------------------------------------------------------------------------
class Normaliser(nn.Module):
    """(x - mean) / max(std, STD_FLOOR), clamped to +-CLAMP: a dimension that barely varies in the
    demonstrations (quaternions) cannot blow up online."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, observations: np.ndarray) -> None:
        x = np.asarray(observations, np.float64)
        if x.ndim != 2 or len(x) == 0 or not np.isfinite(x).all():
            raise HeadwayError("normalisation needs a non-empty, finite (rows, dim) array of observations")
        self.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(x.std(0), STD_FLOOR), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-CLAMP, CLAMP)


# -- 2. networks ---------------------------------------------------------------------------------
class Actor(nn.Module):
    """Deterministic tanh actor with LayerNorm."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU()]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, action_dim))

    def forward(self, obs_n: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs_n))


class EnsembleLinear(nn.Module):
    """`members` independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, members: int, inputs: int, outputs: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(members, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, outputs).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Critics(nn.Module):
    """E critics Q_e(s, a) = f_e(s, a) + w_e * Phi, LayerNorm after every hidden layer."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], members: int) -> None:
        super().__init__()
        self.members = members
        dims = (obs_dim + action_dim, *hidden)
        self.layers = nn.ModuleList([EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.norm_scale = nn.ParameterList([nn.Parameter(torch.ones(members, 1, h)) for h in hidden])
        self.norm_shift = nn.ParameterList([nn.Parameter(torch.zeros(members, 1, h)) for h in hidden])
        self.out = EnsembleLinear(members, dims[-1], 1)
        self.potential_weight = nn.Parameter(torch.zeros(members, 1))

    def forward(self, obs_n: torch.Tensor, action: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        """(E, B) values."""
        x = torch.cat([obs_n, action], -1).unsqueeze(0).expand(self.members, -1, -1)
        for layer, scale, shift in zip(self.layers, self.norm_scale, self.norm_shift):
            x = layer(x)
            x = F.relu(F.layer_norm(x, x.shape[-1:]) * scale + shift)
        q = self.out(x).squeeze(-1)
        return q if phi is None else q + self.potential_weight * phi.unsqueeze(0)


# -- 3. n-step transitions and replay -------------------------------------------------------------
FIELDS = {  # name -> per-row shape ("obs" / "action" resolved at construction)
    "obs": "obs", "action": "action", "reward": (), "next_obs": "obs", "discount": (),
    "ref_action": "action", "next_ref_action": "action", "phi": (), "next_phi": (),
}


class Buffer:
    """Ring buffer of n-step transitions: reward = sum_i gamma^i r_i, discount = gamma^k (0 after a
    true terminal; a time-limit truncation keeps gamma^k and is bootstrapped), the reference's action
    at both ends, and Phi at both ends (for the critic's potential input)."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int) -> None:
        if capacity < 1:
            raise HeadwayError(f"replay capacity must be positive, got {capacity}")
        dims = {"obs": (obs_dim,), "action": (action_dim,)}
        self.capacity, self.size, self.cursor = int(capacity), 0, 0
        self.data = {k: np.zeros((capacity, *(dims[v] if isinstance(v, str) else v)), np.float32) for k, v in FIELDS.items()}

    def __len__(self) -> int:
        return self.size

    def add(self, row: dict) -> None:
        if not np.isfinite(row["reward"]):
            raise HeadwayError(f"refusing to store a non-finite reward ({row['reward']})")
        for k in FIELDS:
            self.data[k][self.cursor] = row[k]
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        index = rng.integers(0, self.size, count)
        return {k: v[index] for k, v in self.data.items()}

    def state(self) -> dict[str, np.ndarray]:
        return {**{k: v[: self.size] for k, v in self.data.items()}, "meta": np.array([self.capacity, self.size, self.cursor])}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Buffer:
        capacity, size, cursor = (int(x) for x in state["meta"])
        buffer = cls(capacity, state["obs"].shape[1], state["action"].shape[1])
        for k in FIELDS:
            buffer.data[k][:size] = state[k]
        buffer.size, buffer.cursor = size, cursor
        return buffer


class NStep:
    """Per env, turns 1-step transitions into n-step ones as they arrive (and flushes at an episode's end)."""

    def __init__(self, n: int, gamma: float) -> None:
        self.n, self.gamma = n, gamma
        self.pending: list[dict] = []

    def push(self, step: dict, terminated: bool, truncated: bool) -> list[dict]:
        """`step` has obs, action, reward, next_obs, ref_action, next_ref_action, phi, next_phi.
        Returns the n-step transitions now complete."""
        self.pending.append(step)
        out = []
        if terminated or truncated:
            while self.pending:
                out.append(self._first(len(self.pending), terminated))
                self.pending.pop(0)
        elif len(self.pending) == self.n:
            out.append(self._first(self.n, False))
            self.pending.pop(0)
        return out

    def _first(self, k: int, terminated: bool) -> dict:
        first, last = self.pending[0], self.pending[k - 1]
        reward = sum(self.gamma**i * s["reward"] for i, s in enumerate(self.pending[:k]))
        return {
            **{key: first[key] for key in ("obs", "action", "ref_action", "phi")},
            "reward": reward,
            "next_obs": last["next_obs"],
            "next_ref_action": last["next_ref_action"],
            "next_phi": last["next_phi"],
            "discount": 0.0 if terminated else self.gamma**k,
        }

    def clear(self) -> None:
        self.pending = []


def mixed_batch(online: Buffer, demos: Buffer | None, size: int, rng: np.random.Generator, demo_ratio: float, device) -> dict[str, torch.Tensor]:
    """`demo_ratio` of the rows from the demonstrations (RLPD's symmetric sampling), the rest online."""
    n_demo = int(round(size * demo_ratio)) if demos is not None and len(demos) else 0
    if len(online) == 0:
        n_demo = size
    parts = [p for p in (online.sample(size - n_demo, rng) if size - n_demo else None, demos.sample(n_demo, rng) if n_demo else None) if p is not None]
    return {k: torch.as_tensor(np.concatenate([p[k] for p in parts]), device=device) for k in FIELDS}


# -- 4. the agent ---------------------------------------------------------------------------------
class Agent:
    def __init__(self, obs_dim: int, action_dim: int, config: AgentConfig, device="cpu", seed: int = 0) -> None:
        self.config, self.device = config, torch.device(device)
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.normaliser = Normaliser(obs_dim).to(self.device)
        self.actor = Actor(obs_dim, action_dim, config.hidden).to(self.device)
        if config.residual > 0:  # the correction starts at exactly 0: the RL candidate is the reference's action
            nn.init.zeros_(self.actor.net[-1].weight)
            nn.init.zeros_(self.actor.net[-1].bias)
        self.critics = Critics(obs_dim, action_dim, config.hidden, config.critics).to(self.device)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critics.parameters(), lr=config.critic_lr)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.target_scale = 1.0  # running mean |y - mean y| of TD targets (the actor's Q unit)
        self.updates = 0
        self.actor_updates = 0
        self.actor_started = False  # until then the agent acts as the reference exactly

    def rl_action(self, obs_n: torch.Tensor, ref: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The RL candidate: the actor's action, or with `residual` its bounded correction of the reference's."""
        raw = self.actor(obs_n)
        action = ref + self.config.residual * raw if self.config.residual > 0 else raw
        return (action if noise is None else action + noise).clamp(-1.0, 1.0)

    def _phi(self, phi: torch.Tensor | None) -> torch.Tensor | None:
        return phi if self.config.critic_potential == "additive" else None

    # acting ------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, ref_action: np.ndarray, explore: bool, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions for a batch of states given the reference's actions there; returns (actions, used_rl)
        where used_rl marks rows where the RL actor's action won."""
        ref = np.asarray(ref_action, np.float32)
        if not self.actor_started:
            action, used = ref.copy(), np.zeros(len(ref), bool)
        else:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            obs_n = self.normaliser(obs_t)
            ref_t = torch.as_tensor(ref, device=self.device)
            rl = self.rl_action(obs_n, ref_t)
            if self.config.ibrl:
                q_ref, q_rl = self.critics(obs_n, ref_t), self.critics(obs_n, rl)
                if self.config.select == "agree":
                    used_t = q_rl.min(0).values > q_ref.max(0).values
                elif self.config.select == "min":
                    used_t = q_rl.min(0).values > q_ref.min(0).values
                else:
                    used_t = q_rl.mean(0) > q_ref.mean(0)
                action = torch.where(used_t[:, None], rl, ref_t).cpu().numpy()
                used = used_t.cpu().numpy()
            else:
                action, used = rl.cpu().numpy(), np.ones(len(ref), bool)
        if explore and self.config.noise > 0:
            action = action + (rng or np.random.default_rng()).normal(0.0, self.config.noise, action.shape).astype(np.float32)
        return np.clip(action, -1.0, 1.0).astype(np.float32), used

    # learning ----------------------------------------------------------------------------------
    def update(self, batch: dict[str, torch.Tensor], train_actor: bool) -> dict[str, float]:
        c = self.config
        obs_n, next_n = self.normaliser(batch["obs"]), self.normaliser(batch["next_obs"])
        phi, next_phi = self._phi(batch["phi"]), self._phi(batch["next_phi"])
        with torch.no_grad():
            subset = torch.randperm(c.critics, generator=self.generator)[: c.target_subset].to(self.device)
            next_ref = batch["next_ref_action"]
            value = self.target_critics(next_n, next_ref, next_phi)[subset].min(0).values
            if self.actor_started or not c.ibrl:
                noise = (torch.randn(next_ref.shape, generator=self.generator).to(self.device) * c.target_noise).clamp(-c.target_noise_clip, c.target_noise_clip)
                next_rl = self.rl_action(next_n, next_ref, noise)
                rl_value = self.target_critics(next_n, next_rl, next_phi)[subset].min(0).values
                value = torch.maximum(value, rl_value) if c.ibrl else rl_value
            target = batch["reward"] + batch["discount"] * value
            self.target_scale = 0.99 * self.target_scale + 0.01 * max(float((target - target.mean()).abs().mean()), 1e-6) if self.updates else max(
                float((target - target.mean()).abs().mean()), 1e-6
            )
        q = self.critics(obs_n, batch["action"], phi)
        critic_loss = ((q - target.unsqueeze(0)) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.critics.parameters(), self.target_critics.parameters()):
                tp.lerp_(p, c.tau)
        self.updates += 1
        metrics = {"critic_loss": float(critic_loss.detach()) / c.critics, "q_mean": float(q.detach().mean()), "target_scale": self.target_scale}
        if train_actor and self.updates % c.actor_every == 0:
            metrics.update(self._update_actor(obs_n, batch["ref_action"], phi))
        return metrics

    def _update_actor(self, obs_n: torch.Tensor, ref_action: torch.Tensor, phi) -> dict[str, float]:
        action = self.rl_action(obs_n, ref_action)
        q = self.critics(obs_n, action, phi).mean(0)
        loss = -q.mean() / self.target_scale
        bc = ((action - ref_action) ** 2).sum(-1).mean()
        if self.config.bc_weight > 0:
            loss = loss + self.config.bc_weight * bc
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        self.actor_updates += 1
        self.actor_started = True
        return {"actor_loss": float(loss.detach()), "actor_ref_distance": float(bc.detach())}

    def pretrain_actor(self, obs: np.ndarray, ref_action: np.ndarray, steps: int, batch_size: int, rng: np.random.Generator) -> float:
        """Regress the RL actor onto the reference's actions (a starting candidate only: the reference
        itself keeps acting wherever the critics prefer it, so nothing is lost if this fit is poor)."""
        obs_t = torch.as_tensor(obs, device=self.device)
        ref_t = torch.as_tensor(ref_action, device=self.device)
        loss = torch.zeros(())
        for _ in range(steps):
            index = torch.as_tensor(rng.integers(0, len(obs_t), batch_size), device=self.device)
            loss = ((self.rl_action(self.normaliser(obs_t[index]), ref_t[index]) - ref_t[index]) ** 2).sum(-1).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.actor_opt.step()
        return float(loss.detach())

    # persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "normaliser": self.normaliser.state_dict(),
            "actor": self.actor.state_dict(),
            "critics": self.critics.state_dict(),
            "target_critics": self.target_critics.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "generator": self.generator.get_state(),
            "counters": [self.updates, self.actor_updates, int(self.actor_started), self.target_scale],
        }

    def load_state_dict(self, state: dict) -> None:
        self.normaliser.load_state_dict(state["normaliser"])
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.target_critics.load_state_dict(state["target_critics"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.generator.set_state(state["generator"])
        updates, actor_updates, started, scale = state["counters"]
        self.updates, self.actor_updates, self.actor_started, self.target_scale = int(updates), int(actor_updates), bool(started), float(scale)
