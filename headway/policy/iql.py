"""Implicit Q-Learning (Kostrikov, Nair & Levine 2022) on reward-model labels, over action chunks.

    headway policy iql --dataset data/lift --labels data/lift.labels --out runs/iql

The seed paper ("Real-World Offline RL from Vision Language Model Feedback") labels an unlabelled,
sub-optimal dataset with a learned reward and learns a policy with IQL. Here the labels come from
`headway label` (a folder with `labels.json` + `labels.parquet`) and the policy is the same
network as `headway policy bc` (headway.policy.bc.BCNet: observation -> chunk of H actions), saved
in the BC checkpoint format, so `headway policy eval` and `headway rollout` load it unchanged. The
critics are saved beside it in `<out>/critic/`.

Read top to bottom:
1. Rewards per transition s_t -> s_{t+1} from the labels (`--reward`):
   - shaped (default): the labels' `reward` column, r_t + gamma Phi(s_{t+1}) - Phi(s_t) with Phi the
     model's progress (potential-based shaping: keeps the optimal policy; gamma is the labels' gamma);
   - progress: Phi(s_{t+1}) itself (dense, not policy-invariant);
   - success: the model's success probability of s_{t+1};
   - sparse: the dataset's recorded `next.reward` (task success), for comparison; a dataset without
     one gets 1 on the last transition of episodes whose labelled success probability ends >= 0.5.
   Rewards are multiplied by one dataset-wide scale so that episode returns span `return_span`
   (IQL's temperature is meaningful only against a known reward scale; D4RL normalises the same way).
2. Transitions over chunks (Q-chunking): Q(s_t, a_{t:t+H}) with the H-step return
   R_t = sum_{k<H} gamma^k r_{t+k} and target R_t + gamma^H V(s_{t+H}). A chunk that runs past the
   episode's end sums the rewards left; it stops there if the episode ended in a true terminal
   (the dataset's next.done with next.success, else the labels' success >= 0.5 on the last frame)
   and otherwise bootstraps gamma^n V(s_{T-1}) (a time-limit truncation: the state after the last
   frame was never stored, so the last one stands in for it).
3. Value: expectile regression of V(s) onto min(Q1, Q2)_target(s, a) (expectile tau, 0.7 default).
4. Critics: twin Q, mean-squared TD error to R + gamma^H V(s'), target networks by Polyak averaging.
5. Actor: BC's per-sample L1 chunk loss weighted by exp(beta * (Q_target(s, a) - V(s))), clipped at
   `max_weight` (100): advantage-weighted regression, which never queries Q outside the dataset's actions.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from headway.atomic import atomic_write_json
from headway.checkpoint import save_checkpoint
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError, unknown_name
from headway.policy.bc import BCNet, BCPolicy, dataset_task, per_sample_loss, weight_shares
from headway.policy.bc_data import (
    ACTION_KEY,
    LABEL_CARD,
    LABEL_TABLE,
    STATE_KEY,
    BCSamples,
    check_label_provenance,
    label_folder,
    load_bc_samples,
)
from headway.runtime import default_device, torch_threads

REWARDS = ("shaped", "progress", "success", "sparse")
CRITIC_FORMAT = "headway.iql_critic"
CRITIC_DIR = "critic"


@dataclass
class IQLConfig:
    """What to learn from, how, and where the checkpoint goes."""

    dataset: Path  # a LeRobot v3.0 dataset with observation.state and action
    labels: Path  # a `headway label` folder (labels.json + labels.parquet)
    out: Path  # checkpoint folder to write (BC format: `headway policy eval` loads it)
    # shaped: the labels' potential-based reward; progress / success: the model's outputs; sparse: the dataset's task reward
    reward: Literal["shaped", "progress", "success", "sparse"] = "shaped"
    expectile: float = 0.7  # tau of the value's expectile regression, in (0.5, 1)
    temperature: float = 1.0  # beta of exp(beta * advantage); chosen in docs/policies.md
    max_weight: float = 100.0
    gamma: float | None = None  # None: the labels' gamma (the one the shaped reward was computed for)
    return_span: float = 100.0  # rewards scaled so that episode returns span this much
    chunk: int = 10  # actions per chunk (Q is over whole chunks)
    steps: int = 3000  # actor steps (value and critics learn alongside)
    critic_steps: int = 0  # value and critic steps before the actor starts, so it is weighted by a value that has converged
    batch_size: int = 256
    lr: float = 1e-3  # actor (as BC)
    critic_lr: float = 3e-4
    weight_decay: float = 1e-4
    polyak: float = 0.005
    hidden: int = 256
    layers: int = 3
    execution: Literal["ensemble", "open_loop"] = "ensemble"  # ensemble: ACT's temporal ensembling | open_loop: whole chunks
    ensemble_decay: float = 0.01
    model: Path | None = None  # the reward checkpoint the labels should come from (checked when given)
    force: bool = False  # use labels whose fingerprints do not match
    episodes: tuple[int, ...] | None = None  # None: every labelled episode
    task: str | None = None
    seed: int = 0
    device: str | None = None  # cpu or cuda; None: cuda when present
    log_every: int = 50

    def __post_init__(self) -> None:
        self.dataset, self.labels, self.out = Path(self.dataset), Path(self.labels), Path(self.out)
        self.model = Path(self.model) if self.model is not None else None
        self.episodes = tuple(int(e) for e in self.episodes) if self.episodes is not None else None
        if self.reward not in REWARDS:
            raise unknown_name("reward", self.reward, REWARDS)
        if not 0.5 < self.expectile < 1.0:
            raise HeadwayError(
                f"--expectile must be in (0.5, 1), got {self.expectile}: 0.5 is the mean (plain SARSA, no improvement "
                "over the data) and 1 the maximum (unstable); IQL uses 0.7-0.9"
            )
        if not self.temperature > 0:
            raise HeadwayError(f"--temperature must be positive, got {self.temperature}")
        if not self.max_weight >= 1:
            raise HeadwayError(f"--max-weight must be at least 1, got {self.max_weight}")
        if self.gamma is not None and not 0.0 <= self.gamma < 1.0:
            raise HeadwayError(f"--gamma must be in [0, 1), got {self.gamma}")
        if not self.return_span > 0:
            raise HeadwayError(f"return span must be positive, got {self.return_span}")
        if not 0 < self.polyak <= 1:
            raise HeadwayError(f"polyak rate must be in (0, 1], got {self.polyak}")
        for name in ("chunk", "steps", "batch_size", "hidden", "layers", "log_every"):
            if getattr(self, name) < 1:
                raise HeadwayError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.critic_steps < 0:
            raise HeadwayError(f"--critic-steps must be 0 or more, got {self.critic_steps}")
        if not (self.lr > 0 and self.critic_lr > 0):
            raise HeadwayError(f"learning rates must be positive, got {self.lr} and {self.critic_lr}")


# -- 1. labels: provenance, rewards, terminals ------------------------------------------------------
@dataclass
class EpisodeLabels:
    """What IQL needs from the labels and the dataset for one episode, frame order."""

    progress: np.ndarray  # (T,) Phi
    success: np.ndarray  # (T,) P(success)
    shaped: np.ndarray  # (T,) the labels' shaped reward of transition t -> t+1
    task_reward: np.ndarray | None  # (T,) the dataset's next.reward, if recorded
    terminal: bool  # the last transition ends the task (no bootstrap)


def _first_bad(values: np.ndarray) -> int | None:
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64).reshape(len(values), -1)).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def read_episode_labels(folder: Path, dataset: Path, episodes: list[int] | None) -> dict[int, EpisodeLabels]:
    """Per-episode labels and the dataset's own reward / termination, checked frame by frame.

    Refused with the episode and frame named: a dataset without `action`, NaN or infinite actions,
    states or labels, and labels whose frames do not line up with the dataset's.
    """
    import pandas as pd

    reader = DatasetReader(dataset)
    if ACTION_KEY not in reader.features:
        raise HeadwayError(
            f"{dataset} has no {ACTION_KEY!r} feature (it has: {', '.join(sorted(reader.features))}); "
            "offline RL learns from recorded actions"
        )
    table = pd.read_parquet(folder / LABEL_TABLE, columns=["episode_index", "frame_index", "progress", "success", "reward"])
    groups = {int(e): g.sort_values("frame_index") for e, g in table.groupby("episode_index")}
    chosen = sorted(groups) if episodes is None else list(episodes)
    if not chosen:
        raise HeadwayError(f"{folder / LABEL_TABLE} labels no episodes")
    result = {}
    for episode in chosen:
        if episode >= reader.num_episodes:
            raise HeadwayError(f"the labels have episode {episode} but {dataset} has episodes 0-{reader.num_episodes - 1}")
        rows = groups.get(episode)
        if rows is None:
            raise HeadwayError(f"{folder / LABEL_TABLE} has no labels for episode {episode}; label it (or leave it out)")
        arrays = reader.episode(episode, decode=False).arrays
        length = len(arrays[ACTION_KEY])
        if len(rows) != length or not np.array_equal(rows["frame_index"].to_numpy(), np.arange(length)):
            raise HeadwayError(
                f"{folder / LABEL_TABLE}: episode {episode} has {len(rows)} labelled frames but {dataset} has {length}; "
                "the labels belong to another dataset. Relabel it"
            )
        for key, what in ((ACTION_KEY, "action"), (STATE_KEY, "observation.state")):
            if key in arrays and (frame := _first_bad(arrays[key])) is not None:
                raise HeadwayError(f"{dataset}: episode {episode} has a NaN or infinite {what} at frame {frame}; clean the dataset")
        for column in ("progress", "success", "reward"):
            if (frame := _first_bad(rows[column].to_numpy())) is not None:
                raise HeadwayError(
                    f"{folder / LABEL_TABLE}: episode {episode} has a NaN or infinite {column} label at frame {frame}; relabel it"
                )
        task_reward = arrays.get("next.reward")
        if task_reward is not None:
            task_reward = np.asarray(task_reward, dtype=np.float64).reshape(-1)
            if (frame := _first_bad(task_reward)) is not None:
                raise HeadwayError(f"{dataset}: episode {episode} has a NaN or infinite next.reward at frame {frame}")
        success = rows["success"].to_numpy(np.float64)
        done, succeeded = arrays.get("next.done"), arrays.get("next.success")
        if done is not None and succeeded is not None:  # the labeller's rule, so the shaped reward telescopes
            terminal = bool(np.asarray(done, bool).reshape(-1)[-1] and np.asarray(succeeded, bool).reshape(-1)[-1])
        else:
            terminal = bool(success[-1] >= 0.5)
        result[episode] = EpisodeLabels(rows["progress"].to_numpy(np.float64), success, rows["reward"].to_numpy(np.float64), task_reward, terminal)
    return result


def transition_rewards(labels: EpisodeLabels, kind: str) -> np.ndarray:
    """Reward of each transition t -> t+1 of one episode (the last one's next state is the last frame)."""
    following = lambda x: np.append(x[1:], x[-1])  # noqa: E731
    if kind == "shaped":
        return labels.shaped.copy()
    if kind == "progress":
        return following(labels.progress)
    if kind == "success":
        return following(labels.success)
    if kind == "sparse":
        if labels.task_reward is not None:
            return labels.task_reward.copy()
        rewards = np.zeros(len(labels.progress))
        rewards[-1] = float(labels.success[-1] >= 0.5)
        return rewards
    raise unknown_name("reward", kind, REWARDS)


@dataclass
class Transitions:
    """One chunked transition per frame: (s_t, a_{t:t+H}) -> (R_t, discount, s_next)."""

    returns: np.ndarray  # (N,) sum_{k<n} gamma^k r_{t+k}, n = min(H, T - t)
    discount: np.ndarray  # (N,) gamma^H, gamma^n at a truncated end, 0 at a terminal end
    next_index: np.ndarray  # (N,) sample index of the bootstrap state


def chunk_transitions(rewards: list[np.ndarray], terminals: list[bool], chunk: int, gamma: float) -> Transitions:
    """H-step returns and bootstrap targets for episodes laid out one after another (as BC samples are)."""
    returns, discounts, nexts, offset = [], [], [], 0
    powers = gamma ** np.arange(chunk)
    for reward, terminal in zip(rewards, terminals):
        length = len(reward)
        padded = np.append(reward, np.zeros(chunk))
        for t in range(length):
            n = min(chunk, length - t)
            returns.append(float((padded[t : t + chunk] * powers).sum()))
            if t + chunk <= length - 1:
                discounts.append(gamma**chunk)
                nexts.append(offset + t + chunk)
            else:
                discounts.append(0.0 if terminal else gamma**n)
                nexts.append(offset + length - 1)
        offset += length
    return Transitions(np.asarray(returns, np.float32), np.asarray(discounts, np.float32), np.asarray(nexts, np.int64))


# -- 2. networks and losses ------------------------------------------------------------------------
def mlp(width: int, hidden: int, layers: int, out: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU()]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, out))


class ValueNet(nn.Module):
    """V(s) on the normalised state."""

    def __init__(self, state_dim: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.net = mlp(state_dim, hidden, layers, 1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).squeeze(-1)


class TwinQ(nn.Module):
    """Q1, Q2 (s, a_{t:t+H}) on the normalised state and flattened normalised chunk."""

    def __init__(self, state_dim: int, chunk_width: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.q1 = mlp(state_dim + chunk_width, hidden, layers, 1)
        self.q2 = mlp(state_dim + chunk_width, hidden, layers, 1)

    def forward(self, state: torch.Tensor, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([state, chunk.flatten(1)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def expectile_loss(difference: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(u < 0)| u^2 for u = target - prediction: minimised by the tau-expectile of the target."""
    weight = torch.where(difference < 0, 1.0 - expectile, expectile)
    return weight * difference.pow(2)


def advantage_weights(advantage: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    return torch.exp(temperature * advantage).clamp(max=max_weight)


class IQLLearner:
    """The three networks, their optimisers and one gradient step on a batch (IQL's Algorithm 1)."""

    def __init__(self, actor: BCNet, state_dim: int, config: IQLConfig, device: torch.device) -> None:
        self.config = config
        self.actor = actor.to(device).train()
        self.value = ValueNet(state_dim, config.hidden, config.layers).to(device)
        self.critic = TwinQ(state_dim, actor.chunk * actor.action_dim, config.hidden, config.layers).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=config.critic_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.actor_optimizer = torch.optim.AdamW(actor.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.steps
        self.actor_schedule = torch.optim.lr_scheduler.LambdaLR(  # BC's schedule, so the actor has BC's budget
            self.actor_optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
        )

    def update(
        self,
        state: torch.Tensor,  # (B, S) normalised
        raw_state: torch.Tensor,  # (B, S) as the actor reads it (it normalises itself)
        chunk: torch.Tensor,  # (B, H, A) normalised actions
        mask: torch.Tensor,  # (B, H) valid chunk steps
        returns: torch.Tensor,  # (B,) H-step returns
        discount: torch.Tensor,  # (B,)
        next_state: torch.Tensor,  # (B, S) normalised
        actor: bool = True,  # False: value and critics only (the warm-up before the actor starts)
    ) -> dict[str, float]:
        c = self.config
        # value: expectile regression onto the target critics' min
        with torch.no_grad():
            q_target = torch.min(*self.critic_target(state, chunk))
        value = self.value(state)
        value_loss = expectile_loss(q_target - value, c.expectile).mean()
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        # actor: advantage-weighted regression of the dataset's chunk
        with torch.no_grad():
            advantage = q_target - self.value(state)
            weights = advantage_weights(advantage, c.temperature, c.max_weight)
        logs = {"mean_advantage": float(advantage.mean()), "mean_weight": float(weights.mean()),
                "clipped_share": float((weights >= c.max_weight).float().mean())}
        if actor:
            losses = per_sample_loss(self.actor(raw_state), chunk, mask)
            actor_loss = (weights * losses).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), 10.0)
            self.actor_optimizer.step()
            self.actor_schedule.step()
            logs["actor_loss"] = float(actor_loss.detach())

        # critics: TD to R + discount * V(s'), V from the network just updated
        with torch.no_grad():
            target = returns + discount * self.value(next_state)
        q1, q2 = self.critic(state, chunk)
        critic_loss = (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # target critics: Polyak averaging
        with torch.no_grad():
            for online, slow in zip(self.critic.parameters(), self.critic_target.parameters()):
                slow.lerp_(online, c.polyak)
        return {"value_loss": float(value_loss.detach()), "critic_loss": float(critic_loss.detach())} | logs


# -- 3. training -----------------------------------------------------------------------------------
def train_iql(config: IQLConfig, progress: bool = True, samples: BCSamples | None = None) -> dict:
    """Train an IQL policy and save it at `config.out` (BC checkpoint format); returns a summary
    (also written to `summary.json`). `samples` may be passed to reuse BC samples with the same chunk."""
    if default_device(config.device).type == "cpu":
        with torch_threads(1):
            return _train_iql(config, progress, samples)
    return _train_iql(config, progress, samples)


def _train_iql(config: IQLConfig, progress: bool, samples: BCSamples | None) -> dict:
    started = time.perf_counter()
    device = default_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    folder = label_folder(config.labels)
    notes = check_label_provenance(folder, config.dataset, config.model, config.force)
    for note in notes:
        print(f"warning: {note}")
    card = json.loads((folder / LABEL_CARD).read_text())
    labels_gamma = float(card.get("identity", {}).get("gamma", 0.99))
    gamma = labels_gamma if config.gamma is None else float(config.gamma)
    if config.reward == "shaped" and abs(gamma - labels_gamma) > 1e-9:
        notes.append(f"the shaped labels were computed for gamma {labels_gamma}, IQL discounts with {gamma}: not policy-invariant")
    episode_labels = read_episode_labels(folder, config.dataset, list(config.episodes) if config.episodes is not None else None)
    episodes = sorted(episode_labels)
    if samples is None:
        samples = load_bc_samples(config.dataset, chunk=config.chunk, episodes=episodes, progress=progress)
    order = list(dict.fromkeys(samples.episode_index.tolist()))
    if order != episodes or samples.actions.shape[1] != config.chunk:
        raise HeadwayError(f"the samples given hold episodes {order[:5]}... chunk {samples.actions.shape[1]}; expected {episodes[:5]}... chunk {config.chunk}")

    rewards = [transition_rewards(episode_labels[e], config.reward) for e in episodes]
    terminals = [episode_labels[e].terminal for e in episodes]
    returns = np.array([r.sum() for r in rewards])
    span = float(returns.max() - returns.min())
    scale = config.return_span / span if span > 1e-6 else 1.0
    transitions = chunk_transitions([r * scale for r in rewards], terminals, config.chunk, gamma)

    state_dim = int(sum(samples.state_dims))
    actor = BCNet(state_dim, samples.action_dim, config.chunk, (), config.hidden, config.layers)
    actor.set_statistics(samples.state, samples.actions.reshape(-1, samples.action_dim))
    learner = IQLLearner(actor, state_dim, config, device)
    raw_state = torch.from_numpy(samples.state).to(device)
    state = ((raw_state - actor.state_mean) / actor.state_std).to(device)
    chunks = actor.normalise_actions(torch.from_numpy(samples.actions).to(device))
    mask = torch.from_numpy(samples.action_mask).to(device).float()
    returns_t = torch.from_numpy(transitions.returns).to(device)
    discount_t = torch.from_numpy(transitions.discount).to(device)
    next_t = torch.from_numpy(transitions.next_index).to(device)
    batch = min(config.batch_size, len(samples))
    history: list[dict[str, float]] = []  # actor steps only
    warmup: list[dict[str, float]] = []
    total = config.critic_steps + config.steps
    bar = tqdm(range(total), desc=f"iql {config.out.name}", disable=not progress)
    for step in bar:
        index = torch.from_numpy(rng.integers(0, len(samples), batch)).to(device)
        actor_step = step >= config.critic_steps
        logs = learner.update(
            state[index], raw_state[index], chunks[index], mask[index], returns_t[index], discount_t[index], state[next_t[index]],
            actor=actor_step,
        )
        (history if actor_step else warmup).append(logs)
        if not all(math.isfinite(v) for v in logs.values()):
            raise HeadwayError(f"IQL diverged at step {step} ({logs}); lower the learning rates or --temperature")
        if step % config.log_every == 0 or step == total - 1:
            recent = (history or warmup)[-config.log_every :]
            bar.set_postfix({k: f"{np.mean([h[k] for h in recent]):.3f}" for k in ("value_loss", "critic_loss", "actor_loss") if k in recent[0]})

    task = config.task or dataset_task(config.dataset)
    settings = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    meta = {
        "task": task,
        "views": [],
        "image_size": None,
        "obs": "state",
        "state_keys": list(samples.state_keys),
        "state_dims": [int(d) for d in samples.state_dims],
        "action_dim": samples.action_dim,
        "chunk": config.chunk,
        "hidden": config.hidden,
        "layers": config.layers,
        "image_dim": 64,
        "execution": config.execution,
        "ensemble_decay": config.ensemble_decay,
        "algorithm": "iql",
        "train": {
            "algorithm": "iql",
            "dataset": str(config.dataset),
            "labels": str(folder),
            "reward": config.reward,
            "gamma": gamma,
            "reward_scale": scale,
            "episodes": len(episodes),
            "samples": len(samples),
            "steps": config.steps,
            "critic_steps": config.critic_steps,
            "seed": config.seed,
            "expectile": config.expectile,
            "temperature": config.temperature,
        },
    }
    with torch.no_grad():  # how concentrated the final weights are over the whole dataset (1: plain BC)
        weights = advantage_weights(torch.min(*learner.critic_target(state, chunks)) - learner.value(state), config.temperature, config.max_weight)
        shares = weight_shares(weights.cpu().numpy(), samples.episode_index)
    learner.actor.eval()
    BCPolicy(learner.actor, meta, device).save(config.out)
    critic_state = {f"value.{k}": v for k, v in learner.value.state_dict().items()}
    critic_state |= {f"critic.{k}": v for k, v in learner.critic.state_dict().items()}
    save_checkpoint(config.out / CRITIC_DIR, critic_state, CRITIC_FORMAT, 1, {"state_dim": state_dim, "chunk": config.chunk,
                    "action_dim": samples.action_dim, "hidden": config.hidden, "layers": config.layers, "iql": settings})
    tail = history[-min(50, len(history)) :]
    summary = {
        "out": str(config.out),
        "task": task,
        "algorithm": "iql",
        "reward": config.reward,
        "gamma": gamma,
        "reward_scale": scale,
        "terminal_episodes": int(sum(terminals)),
        "episodes": len(episodes),
        "samples": len(samples),
        "steps": config.steps,
        "critic_steps": config.critic_steps,
        **{f"warmup_{k}": float(np.mean([h[k] for h in warmup[-50:]])) for k in (warmup[0] if warmup else ())},
        **{f"final_{k}": float(np.mean([h[k] for h in tail])) for k in tail[0]},
        "first_actor_loss": float(np.mean([h["actor_loss"] for h in history[:20]])),
        **shares,  # effective_sample_share, weight_share_by_episode: how concentrated the actor's weights are
        "seconds": time.perf_counter() - started,
        "notes": notes,
    }
    atomic_write_json(config.out / "summary.json", summary)
    return summary
