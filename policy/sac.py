"""Soft actor-critic on state observations: tanh-Gaussian actor, twin (or more) critics, entropy tuning.

RLPD-style defaults (Ball et al. 2023): LayerNorm in the critics, a symmetric sampling of online
and demonstration transitions (see `policy/replay.py`), several critic updates per env step when
asked. `SACPolicy` is the actor alone as a headway `Policy` (format "headway.sac"), loadable with
`headway.policy.interface.load_policy` by the rollout controller and `headway policy eval`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headway.checkpoint import load_state, read_checked_config, save_checkpoint
from headway.errors import HeadwayError
from headway.policy.interface import Observation

FORMAT = "headway.sac"
FORMAT_VERSION = 1
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class SACConfig:
    """Network sizes and learning hyper-parameters of the agent."""

    hidden: tuple[int, ...] = (256, 256)
    critics: int = 2
    critic_layer_norm: bool = True
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    init_alpha: float = 0.1
    target_entropy: float | None = None  # None: -action_dim
    bc_weight: float = 0.0  # weight of a behaviour-cloning term (MSE to demo actions) in the actor loss

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise HeadwayError(f"hidden layer sizes must be positive, got {self.hidden}")
        if self.critics < 2:
            raise HeadwayError(f"SAC needs at least 2 critics (clipped double Q), got {self.critics}")
        if not 0.0 <= self.gamma < 1.0:
            raise HeadwayError(f"gamma must be in [0, 1), got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise HeadwayError(f"tau must be in (0, 1], got {self.tau}")
        if self.init_alpha <= 0:
            raise HeadwayError(f"init_alpha must be positive, got {self.init_alpha}")
        if self.bc_weight < 0:
            raise HeadwayError(f"bc_weight must be >= 0, got {self.bc_weight}")


def mlp(inputs: int, hidden: tuple[int, ...], outputs: int, layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width)] + ([nn.LayerNorm(width)] if layer_norm else []) + [nn.ReLU()]
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy over actions in [-1, 1]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net((obs - self.obs_mean) / self.obs_std).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability (tanh change of variables)."""
        mean, log_std = self(obs)
        std = log_std.exp()
        raw = mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((raw - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - raw - F.softplus(-2 * raw))).sum(-1)
        return torch.tanh(raw), log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class Critics(nn.Module):
    """An ensemble of Q(s, a) heads evaluated together."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], count: int, layer_norm: bool) -> None:
        super().__init__()
        self.heads = nn.ModuleList([mlp(obs_dim + action_dim, hidden, 1, layer_norm) for _ in range(count)])
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(critics, batch) Q values."""
        x = torch.cat([(obs - self.obs_mean) / self.obs_std, action], dim=-1)
        return torch.stack([head(x).squeeze(-1) for head in self.heads])


def td_targets(
    reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """r + gamma (1 - terminated) (min Q(s', a') - alpha log pi(a'|s')): bootstraps through truncations,
    never through true terminals."""
    soft_value = next_q.min(0).values - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_value


class SACAgent:
    """The learner: actor, critics with Polyak-averaged targets, and a learned temperature."""

    def __init__(self, obs_dim: int, action_dim: int, config: SACConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config or SACConfig()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.device = torch.device(device)
        c = self.config
        self.actor = Actor(obs_dim, action_dim, c.hidden).to(self.device)
        self.critics = Critics(obs_dim, action_dim, c.hidden, c.critics, c.critic_layer_norm).to(self.device)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(c.init_alpha), device=self.device, requires_grad=True)
        self.target_entropy = float(c.target_entropy if c.target_entropy is not None else -action_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critics.parameters(), lr=c.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=c.alpha_lr)
        self.updates = 0

    @property
    def alpha(self) -> float:
        return self.log_alpha.exp().item()

    def set_normalisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Fix the observation normalisation (from demonstration states) in every network."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        std_t = torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32, device=self.device)
        for net in (self.actor, self.critics, self.target_critics):
            net.obs_mean.copy_(mean_t)
            net.obs_std.copy_(std_t)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        action = self.actor.deterministic(x) if deterministic else self.actor.sample(x)[0]
        return action[0].cpu().numpy().astype(np.float32)

    def update(self, batch: dict[str, torch.Tensor], actor: bool = True, demo_mask: torch.Tensor | None = None) -> dict[str, float]:
        """One gradient step on the critics (and, when `actor`, the actor and temperature)."""
        c = self.config
        obs, action, reward = batch["obs"], batch["action"], batch["reward"]
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch["next_obs"])
            next_q = self.target_critics(batch["next_obs"], next_action)
            target = td_targets(reward, batch["terminated"], next_q, next_log_prob, self.alpha, c.gamma)
        q = self.critics(obs, action)
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        metrics = {"critic_loss": critic_loss.item(), "q_mean": q.mean().item()}
        if actor:
            new_action, log_prob = self.actor.sample(obs)
            q_new = self.critics(obs, new_action).mean(0)
            if c.bc_weight > 0 and demo_mask is not None and bool(demo_mask.any()):
                # TD3+BC style: the Q term is normalised by its magnitude, so bc_weight is scale-free;
                # the entropy term is not (normalising it by a tiny sparse-reward Q would let it dominate)
                mean_action = self.actor.deterministic(obs[demo_mask])
                bc = F.mse_loss(mean_action, action[demo_mask])
                q_scale = q_new.abs().mean().detach() + 1e-6
                actor_loss = (self.alpha * log_prob - q_new / q_scale).mean() + c.bc_weight * bc
                metrics["bc_loss"] = bc.item()
            else:
                actor_loss = (self.alpha * log_prob - q_new).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            metrics.update(actor_loss=actor_loss.item(), alpha=self.alpha, entropy=-log_prob.mean().item())
        with torch.no_grad():
            for p, tp in zip(self.critics.parameters(), self.target_critics.parameters()):
                tp.lerp_(p, c.tau)
        self.updates += 1
        return metrics

    def pretrain_actor(self, obs: torch.Tensor, actions: torch.Tensor, steps: int, batch_size: int = 256) -> float:
        """Supervised phase: regress the actor's mean action onto target actions (distillation or BC)."""
        actions = actions.clamp(-0.999, 0.999)
        loss = torch.tensor(float("nan"))
        for _ in range(steps):
            idx = torch.randint(0, len(obs), (min(batch_size, len(obs)),), device=obs.device)
            mean, log_std = self.actor(obs[idx])
            # maximise the likelihood of the target under the squashed Gaussian, with a mean-squared anchor
            raw_target = torch.atanh(actions[idx])
            nll = (0.5 * ((raw_target - mean) / log_std.exp()) ** 2 + log_std).sum(-1).mean()
            loss = F.mse_loss(torch.tanh(mean), actions[idx]) + 1e-2 * nll
            self.actor_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.actor_opt.step()
        return loss.item()

    # -- full training state (for resume) ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critics": self.critics.state_dict(),
            "target_critics": self.target_critics.state_dict(),
            "log_alpha": self.log_alpha.detach().cpu(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.target_critics.load_state_dict(state["target_critics"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.updates = int(state["updates"])


def observation_vector(observation: Observation) -> np.ndarray:
    """The agent's input: proprioception then object state (no images)."""
    return np.concatenate([np.asarray(observation["state"], np.float32), np.asarray(observation["object"], np.float32)])


@dataclass
class SACPolicyConfig:
    task: str
    state_dim: int
    object_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    extra: dict = field(default_factory=dict)


class SACPolicy:
    """The SAC actor as a headway `Policy`: deterministic (mean) actions from state + object state."""

    def __init__(self, config: SACPolicyConfig, actor: Actor | None = None, device: str | None = None) -> None:
        self.config = config
        self.device = torch.device(device or "cpu")
        self.actor = (actor or Actor(config.state_dim + config.object_dim, config.action_dim, tuple(config.hidden))).to(self.device).eval()

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def views(self) -> tuple[str, ...]:
        return ()

    @property
    def state_dim(self) -> int:
        return self.config.state_dim

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def act(self, observation: Observation) -> np.ndarray:
        if "object" not in observation:
            raise HeadwayError("the SAC policy needs the object state ('object') in the observation; it runs in simulation only")
        obs = observation_vector(observation)
        expected = self.config.state_dim + self.config.object_dim
        if obs.shape != (expected,):
            raise HeadwayError(
                f"observation has {obs.shape[0]} state+object values; this policy was trained on {expected} "
                f"({self.config.state_dim} + {self.config.object_dim}) for task {self.task!r}"
            )
        x = torch.as_tensor(obs, device=self.device)[None]
        return self.actor.deterministic(x)[0].cpu().numpy().astype(np.float32)

    def save(self, path: Path) -> None:
        """`config.json` + `model.safetensors` (each written atomically)."""
        config = asdict(self.config)
        config["hidden"] = list(config["hidden"])
        save_checkpoint(path, self.actor.state_dict(), FORMAT, FORMAT_VERSION, {"policy": config})

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> SACPolicy:
        meta = read_checked_config(path, FORMAT, FORMAT_VERSION, "SAC policy", "Retrain it with `headway rl train`")
        config = SACPolicyConfig(**{**meta["policy"], "hidden": tuple(meta["policy"]["hidden"])})
        policy = cls(config, device=device)
        load_state(policy.actor, path)
        return policy
