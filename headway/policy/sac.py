"""Soft actor-critic on state observations: tanh-Gaussian actor, twin (or more) critics, entropy tuning.

RLPD-style defaults (Ball et al. 2023): LayerNorm in the critics, a symmetric sampling of online
and demonstration transitions (see `headway/policy/replay.py`), several critic updates per env step when
asked.

IBRL (`SACConfig.ibrl`, Hu et al. 2023, "Imitation Bootstrapped Reinforcement Learning"): the
initial (cloned or distilled) actor is kept frozen as a reference policy. When acting, the agent
proposes the reference's action and its own and executes the one with the higher Q (critics
combined by `ibrl_q`); in the TD target it bootstraps through whichever of the two next actions
has the higher target value. The RL actor can then only take over where the critics judge it
better, so fine-tuning starts from the reference's behaviour instead of first degrading it.
Residual (`SACConfig.residual` = r > 0): the actor outputs a correction u in [-1, 1] and the agent
executes clip(a_ref + r u), so it can never stray more than r from the frozen reference (the actor
restarts as a zero correction). Both can be combined.
AWAC (`SACConfig.actor_update = "awac"`, Nair et al. 2020, "Accelerating Online Reinforcement
Learning with Offline Datasets"): the actor is not pushed up the critics' gradient; it keeps
imitating replay actions (demonstrations and its own) with the cloning loss, each row weighted by
exp(advantage / temperature), so it only ever moves toward actions that were taken and valued
above its own: a critic that is wrong about actions nobody took cannot pull the actor there. On
stack it degraded a small cloned actor as the SAC update did, and held a larger, better fitted one
(README, "Online RL").
Held exploration (`SACConfig.exploration = "held"`): a clone is far more certain than SAC's entropy
target of -action_dim, and the temperature widens it within a few hundred updates whatever its
size (Adam moves the log-std at its full rate on any consistent gradient), so exploration in a
precise task soon always fails. Held, the agent samples with the clone's mean spread per action
dimension, fixed, and drops the entropy term (TD3-like noise, scaled to the clone's certainty).

`SACPolicy` is the acting part as a headway `Policy` (format "headway.sac"), loadable with
`headway.policy.interface.load_policy` by the rollout controller and `headway policy eval`: the
actor alone, or with a reference (IBRL, residual) the actor, the reference and (IBRL) the critics,
acting exactly as the agent's evaluation does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headway.checkpoint import load_state, read_checked_config, save_checkpoint
from headway.errors import HeadwayError
from headway.policy.interface import Observation

FORMAT = "headway.sac"
FORMAT_VERSION = 2  # 2: weights under actor./reference./critics. (reference and critics when the agent used them)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
IBRL_Q = ("min", "mean")  # how the critics' values of a candidate action are combined to choose it
ACTOR_UPDATES = ("sac", "awac")
EXPLORATIONS = ("learned", "held")
AWAC_MAX_WEIGHT = 20.0  # clip of exp(advantage / temperature), as AWR and AWAC do


@dataclass
class SACConfig:
    """Network sizes and learning hyper-parameters of the agent."""

    hidden: tuple[int, ...] = (256, 256)  # hidden layer widths of actor and critics, e.g. 512,512,512
    critics: int = 2
    critic_layer_norm: bool = True
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99  # discount (also used by the shaping)
    tau: float = 0.005
    init_alpha: float = 0.1  # initial entropy temperature (small when fine-tuning an init)
    target_entropy: float | None = None  # None: -action_dim
    bc_weight: float = 0.0  # weight of a behaviour-cloning term (MSE to demo actions) in the actor loss
    ibrl: bool = False  # act and bootstrap with the better of the actor and a frozen copy of its initialisation
    ibrl_q: Literal["min", "mean"] = "min"  # min | mean over the critics when IBRL compares the two actions
    residual: float = 0.0  # > 0: the actor's output is a correction of at most this size to the frozen reference's action
    actor_update: Literal["sac", "awac"] = "sac"  # sac: maximise Q + entropy | awac: advantage-weighted cloning of replay actions
    awac_temperature: float = 1.0  # in units of the batch's advantage spread (smaller: imitate only the best)
    # learned: SAC's own spread and temperature | held: the initialised actor's mean spread per action
    # dimension, fixed, and no entropy term (see SACAgent.hold_spread)
    exploration: Literal["learned", "held"] = "learned"

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
        if self.ibrl_q not in IBRL_Q:
            raise HeadwayError(f"ibrl_q must be one of {', '.join(IBRL_Q)}, got {self.ibrl_q!r}")
        if not 0.0 <= self.residual <= 2.0:
            raise HeadwayError(f"residual must be in [0, 2] (0: off; actions span [-1, 1]), got {self.residual}")
        if self.actor_update not in ACTOR_UPDATES:
            raise HeadwayError(f"actor_update must be one of {', '.join(ACTOR_UPDATES)}, got {self.actor_update!r}")
        if self.awac_temperature <= 0:
            raise HeadwayError(f"awac_temperature must be positive, got {self.awac_temperature}")
        if self.exploration not in EXPLORATIONS:
            raise HeadwayError(f"exploration must be one of {', '.join(EXPLORATIONS)}, got {self.exploration!r}")
        if self.actor_update == "awac" and self.uses_reference:
            raise HeadwayError("the AWAC update imitates replay actions directly; it does not combine with ibrl or residual (set residual 0)")

    @property
    def uses_reference(self) -> bool:
        return self.ibrl or self.residual > 0


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

    def sample(self, obs: torch.Tensor, log_std: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability (tanh change of variables); `log_std`
        replaces the actor's own spread when given."""
        mean, own_log_std = self(obs)
        log_std = own_log_std if log_std is None else log_std.expand_as(mean)
        std = log_std.exp()
        raw = mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((raw - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - raw - F.softplus(-2 * raw))).sum(-1)
        return torch.tanh(raw), log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])

    def imitation_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Per-row loss of imitating `actions`: the mean action's squared error plus a small negative
        log-likelihood under the squashed Gaussian (which fits the spread)."""
        actions = actions.clamp(-0.999, 0.999)
        mean, log_std = self(obs)
        nll = (0.5 * ((torch.atanh(actions) - mean) / log_std.exp()) ** 2 + log_std).sum(-1)
        return ((torch.tanh(mean) - actions) ** 2).mean(-1) + 1e-2 * nll


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
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: float,
    gamma: float,
    reference_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """r + gamma (1 - terminated) V(s'): bootstraps through truncations, never through true terminals.

    V(s') = min Q(s', a') - alpha log pi(a'|s') for the actor's next action a'; with IBRL
    (`reference_q`: the target critics' values of the reference's next action), the larger of that
    and min Q(s', a_ref) (the deterministic reference has no entropy bonus)."""
    soft_value = next_q.min(0).values - alpha * next_log_prob
    if reference_q is not None:
        soft_value = torch.maximum(soft_value, reference_q.min(0).values)
    return reward + gamma * (1.0 - terminated) * soft_value


def executed_action(raw: torch.Tensor, obs: torch.Tensor, reference: Actor | None, residual: float) -> torch.Tensor:
    """The action the actor's output `raw` stands for: itself, or with `residual` > 0 a bounded
    correction to the reference's action, clip(a_ref + residual * raw, -1, 1)."""
    if residual <= 0:
        return raw
    return (reference.deterministic(obs) + residual * raw).clamp(-1.0, 1.0)


def behaviour(raw: torch.Tensor, obs: torch.Tensor, reference: Actor | None, critics: Critics | None, residual: float, ibrl_q: str) -> torch.Tensor:
    """What is executed for the actor's output `raw`: `executed_action`, and with IBRL (`critics`
    given) the reference's own action instead where the critics value it more."""
    action = executed_action(raw, obs, reference, residual)
    if critics is not None:
        action, _ = select_actions(critics, obs, [reference.deterministic(obs), action], ibrl_q)
    return action


def select_actions(critics: Critics, obs: torch.Tensor, candidates: list[torch.Tensor], how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the candidate action with the highest Q (critics combined by `how`: min | mean), and
    which candidate it was (ties go to the earlier one)."""
    values = torch.stack([critics(obs, action).min(0).values if how == "min" else critics(obs, action).mean(0) for action in candidates])
    chosen = values.argmax(0)
    return torch.stack(candidates)[chosen, torch.arange(len(chosen), device=obs.device)], chosen


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
        self.reference: Actor | None = None  # frozen initial actor (IBRL, residual), set by `freeze_reference`
        self.held_log_std: torch.Tensor | None = None  # per action dimension, set by `hold_spread`
        self.updates = 0

    @property
    def alpha(self) -> float:
        """The entropy temperature (0 when exploration is held: there is no entropy term)."""
        return 0.0 if self.config.exploration == "held" else self.log_alpha.exp().item()

    def set_normalisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Fix the observation normalisation (from demonstration states) in every network."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        std_t = torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32, device=self.device)
        for net in (self.actor, self.critics, self.target_critics, self.reference):
            if net is not None:
                net.obs_mean.copy_(mean_t)
                net.obs_std.copy_(std_t)

    @torch.no_grad()
    def hold_spread(self, obs: torch.Tensor) -> list[float]:
        """Fix exploration at the actor's mean spread per action dimension on `obs` (demonstration
        states); call it on the initialised actor, before `freeze_reference`. Returns the spread.

        A clone is far more certain than SAC's entropy target; following that target widens its
        spread within a few hundred updates, and exploration in a precise task then always fails.
        With a residual the spread is expressed in the correction's units (divided by its bound)."""
        log_std = self.actor(obs)[1].mean(0)
        self.held_log_std = log_std - math.log(self.config.residual) if self.config.residual > 0 else log_std
        return log_std.exp().tolist()

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.exploration == "held" and self.held_log_std is None:
            raise HeadwayError("held exploration needs the initial spread: initialise the actor (clone or distil), then call hold_spread()")
        return self.actor.sample(obs, self.held_log_std)

    def freeze_reference(self) -> None:
        """Keep a frozen copy of the actor as it is now (after cloning or distillation) as the reference;
        with `residual`, the actor then restarts as a zero correction (mean 0, unit raw std)."""
        self.reference = copy.deepcopy(self.actor).requires_grad_(False).eval()
        if self.config.residual > 0:
            with torch.no_grad():
                self.actor.net[-1].weight.zero_()
                self.actor.net[-1].bias.zero_()
            self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.config.actor_lr)  # no stale moments

    def _check_reference(self) -> None:
        if self.config.uses_reference and self.reference is None:
            raise HeadwayError("IBRL and residual need a reference actor: initialise the actor (clone or distil), then call freeze_reference()")

    def _execute(self, raw: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        self._check_reference()
        return executed_action(raw, obs, self.reference, self.config.residual)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The executed action for the actor's output (its mean when `deterministic`): see `behaviour`."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        raw = self.actor.deterministic(x) if deterministic else self._sample(x)[0]
        self._check_reference()
        c = self.config
        action = behaviour(raw, x, self.reference, self.critics if c.ibrl else None, c.residual, c.ibrl_q)
        return action[0].cpu().numpy().astype(np.float32)

    def update(self, batch: dict[str, torch.Tensor], actor: bool = True, demo_mask: torch.Tensor | None = None) -> dict[str, float]:
        """One gradient step on the critics (and, when `actor`, the actor and temperature)."""
        c = self.config
        obs, action, reward = batch["obs"], batch["action"], batch["reward"]
        metrics = {}
        with torch.no_grad():
            next_obs = batch["next_obs"]
            next_raw, next_log_prob = self._sample(next_obs)
            next_q = self.target_critics(next_obs, self._execute(next_raw, next_obs))
            reference_q = self.target_critics(next_obs, self.reference.deterministic(next_obs)) if c.ibrl else None
            target = td_targets(reward, batch["terminated"], next_q, next_log_prob, self.alpha, c.gamma, reference_q)
            if reference_q is not None:
                rl_value = next_q.min(0).values - self.alpha * next_log_prob
                metrics["reference_target_share"] = (reference_q.min(0).values > rl_value).float().mean().item()
        q = self.critics(obs, action)
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        metrics.update(critic_loss=critic_loss.item(), q_mean=q.mean().item())
        if actor:
            imitate = c.bc_weight > 0 and demo_mask is not None and bool(demo_mask.any())
            if c.actor_update == "awac":
                actor_loss, weighting = self._awac_loss(obs, action)
                metrics.update(weighting)
                log_prob = None
            else:
                new_raw, log_prob = self._sample(obs)
                q_new = self.critics(obs, self._execute(new_raw, obs)).mean(0)
                q_scale = q_new.abs().mean().detach() + 1e-6 if imitate else 1.0
                # TD3+BC style: with a BC term the Q term is normalised by its magnitude, so bc_weight is
                # scale-free; the entropy term is not (normalising it by a tiny sparse-reward Q would let it dominate)
                actor_loss = (self.alpha * log_prob - q_new / q_scale).mean()
            if imitate:
                mean_action = self._execute(self.actor.deterministic(obs[demo_mask]), obs[demo_mask])
                bc = F.mse_loss(mean_action, action[demo_mask])
                actor_loss = actor_loss + c.bc_weight * bc
                metrics["bc_loss"] = bc.item()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            if log_prob is not None and c.exploration == "learned":  # the temperature belongs to the entropy-regularised objective
                alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
                self.alpha_opt.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_opt.step()
                metrics["entropy"] = -log_prob.mean().item()
            metrics.update(actor_loss=actor_loss.item(), alpha=self.alpha)
        with torch.no_grad():
            for p, tp in zip(self.critics.parameters(), self.target_critics.parameters()):
                tp.lerp_(p, c.tau)
        self.updates += 1
        return metrics

    def _awac_loss(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The cloning loss on the batch's actions, weighted by their advantage over the actor's mean
        action, and how the weights fell."""
        with torch.no_grad():
            advantage = self.critics(obs, action).min(0).values - self.critics(obs, self.actor.deterministic(obs)).min(0).values
            scaled = advantage / (self.config.awac_temperature * (advantage.std() + 1e-6))
            weights = scaled.clamp(max=math.log(AWAC_MAX_WEIGHT)).exp()
            weights = weights / weights.mean()
        weighting = {"awac_positive_share": (advantage > 0).float().mean().item(), "awac_max_weight": weights.max().item()}
        return (weights * self.actor.imitation_loss(obs, action)).mean(), weighting

    def pretrain_actor(self, obs: torch.Tensor, actions: torch.Tensor, steps: int, batch_size: int = 256, lr: float | None = None) -> float:
        """Supervised phase: regress the actor's mean action onto target actions (distillation or BC),
        at learning rate `lr` (None: the actor's own); fine-tuning then goes on at the actor's rate."""
        loss = torch.tensor(float("nan"))
        groups = self.actor_opt.param_groups
        for group in groups:
            group["lr"] = self.config.actor_lr if lr is None else lr
        for _ in range(steps):
            idx = torch.randint(0, len(obs), (min(batch_size, len(obs)),), device=obs.device)
            loss = self.actor.imitation_loss(obs[idx], actions[idx]).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.actor_opt.step()
        for group in groups:
            group["lr"] = self.config.actor_lr
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
            "reference": None if self.reference is None else self.reference.state_dict(),
            "updates": self.updates,
            "held_log_std": self.held_log_std,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("reference") is not None:
            self.reference = copy.deepcopy(self.actor).requires_grad_(False).eval()
            self.reference.load_state_dict(state["reference"])
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.target_critics.load_state_dict(state["target_critics"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.updates = int(state["updates"])
        self.held_log_std = state.get("held_log_std")


def observation_vector(observation: Observation) -> np.ndarray:
    """The agent's input: proprioception then object state (no images)."""
    return np.concatenate([np.asarray(observation["state"], np.float32), np.asarray(observation["object"], np.float32)])


@dataclass
class SACPolicyConfig:
    """What the exported policy is: its sizes and how it uses its reference actor (IBRL choice, residual)."""

    task: str
    state_dim: int
    object_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    extra: dict = field(default_factory=dict)
    ibrl: bool = False  # also holds the reference actor and the critics, and acts as the IBRL agent evaluates
    critics: int = 2
    critic_layer_norm: bool = True
    ibrl_q: str = "min"
    residual: float = 0.0  # > 0: also holds the reference actor; the actor's output corrects its action

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.ibrl_q not in IBRL_Q:
            raise HeadwayError(f"ibrl_q must be one of {', '.join(IBRL_Q)}, got {self.ibrl_q!r}")


class SACPolicy:
    """The SAC agent's deterministic behaviour as a headway `Policy`, from state + object state: the
    actor's mean action, as a residual correction to the reference's when so trained, and with IBRL
    that or the reference's own, whichever the critics value more (`behaviour`)."""

    def __init__(self, config: SACPolicyConfig, device: str | None = None) -> None:
        self.config = config
        self.device = torch.device(device or "cpu")
        obs_dim = config.state_dim + config.object_dim
        nets = {"actor": Actor(obs_dim, config.action_dim, config.hidden)}
        if config.ibrl or config.residual > 0:
            nets["reference"] = Actor(obs_dim, config.action_dim, config.hidden)
        if config.ibrl:
            nets["critics"] = Critics(obs_dim, config.action_dim, config.hidden, config.critics, config.critic_layer_norm)
        self.nets = nn.ModuleDict(nets).to(self.device).eval()

    @classmethod
    def from_agent(cls, agent: SACAgent, config: SACPolicyConfig) -> SACPolicy:
        """The agent's current acting networks, copied."""
        policy = cls(config)
        policy.nets["actor"].load_state_dict(agent.actor.state_dict())
        if "reference" in policy.nets:
            policy.nets["reference"].load_state_dict(agent.reference.state_dict())
        if "critics" in policy.nets:
            policy.nets["critics"].load_state_dict(agent.critics.state_dict())
        return policy

    @property
    def actor(self) -> Actor:
        return self.nets["actor"]

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
        c = self.config
        action = behaviour(self.actor.deterministic(x), x, self.nets["reference"] if "reference" in self.nets else None, self.nets["critics"] if c.ibrl else None, c.residual, c.ibrl_q)
        return action[0].cpu().numpy().astype(np.float32)

    def save(self, path: Path) -> None:
        """`config.json` + `model.safetensors` (each written atomically)."""
        config = asdict(self.config)
        config["hidden"] = list(config["hidden"])
        save_checkpoint(path, self.nets.state_dict(), FORMAT, FORMAT_VERSION, {"policy": config})

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> SACPolicy:
        meta = read_checked_config(path, FORMAT, FORMAT_VERSION, "SAC policy", "Retrain it with `headway rl train`")
        policy = cls(SACPolicyConfig(**meta["policy"]), device=device)
        load_state(policy.nets, path)
        return policy
