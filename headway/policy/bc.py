"""Behaviour cloning of action chunks, optionally weighted per sample by RA-BC (reward-aligned BC).

The network maps one observation to the next H actions (an action chunk, H = 10 by default):
- `state` (default): proprioception + object state, through an MLP. Fast and strong in simulation.
- `images`: the camera views only, each through a small conv encoder (headway.perception's ConvEncoder).
- `state+images`: proprioception + camera views (no object state, so it can run on a real arm).
Inputs and actions are normalised with dataset statistics kept in the checkpoint.

Execution: temporal ensembling as in ACT (Zhao et al. 2023) by default: the policy is queried every
step and the overlapping predictions for the current step are averaged with weights exp(-m i),
i = 0 for the oldest. It stays closed-loop (reacts to the current state every step, which matters
when imitating noisy demonstrations) while the chunks keep actions smooth; an MLP query costs well
under a millisecond. `execution="open_loop"` plays each chunk to its end instead. Measured on lift
(bench/rabc.py checkpoints of seed 0, 30 held-out episodes) the two are within one episode of each
other (BC 90% ensembled vs 93% open loop, RA-BC 100% vs 97%), so the default rests on the argument above.

The loss is an L1 per sample, averaged over the valid steps of its chunk, then weighted per sample
(RA-BC weights normalised to sum to the batch size, LeRobot's convention), so the same weighting
works for any policy that yields a per-sample loss.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from headway.atomic import atomic_write_json
from headway.checkpoint import load_state, read_checked_config, save_checkpoint
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError, unknown_name
from headway.perception.conv_encoder import ConvEncoder
from headway.perception.preprocess import random_shift, resize_frames
from headway.policy.bc_data import (
    OBJECT_KEY,
    STATE_KEY,
    BCSamples,
    check_label_provenance,
    headway_label_folder,
    labelled_successes,
    load_bc_samples,
    read_progress,
)
from headway.reward.rabc import KAPPA, normalise_batch_weights, rabc_weights
from headway.runtime import default_device, torch_threads

FORMAT = "headway.bc"
FORMAT_VERSION = 1
OBS_MODES = ("state", "images", "state+images")
EXECUTIONS = ("ensemble", "open_loop")
WEIGHTINGS = ("none", "rabc", "success")
MIN_STD = 1e-2  # near-constant features are not blown up by normalisation


@dataclass
class BCConfig:
    """What to clone from, how, and where the checkpoint goes."""

    dataset: Path  # a LeRobot v3.0 dataset with observation.state and action
    out: Path  # checkpoint folder to write
    # state: proprioception + object state; images: cameras only; state+images: proprioception + cameras
    obs: Literal["state", "images", "state+images"] = "state"
    chunk: int = 10  # actions predicted per query (H)
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 256
    layers: int = 3
    image_dim: int = 64
    views: tuple[str, ...] | None = None  # None: every camera of the dataset (image modes only)
    image_size: int | None = None  # None: the dataset's own size
    # rabc: LeRobot's reward-aligned weights | success: only the episodes the labels call successful
    weights: Literal["none", "rabc", "success"] = "none"
    labels: Path | None = None  # rabc: sarm_progress.parquet or a folder holding one; success: a `headway label` folder
    kappa: float = KAPPA
    force: bool = False  # use `headway label` labels whose dataset fingerprint does not match this dataset's
    # ensemble: ACT's temporal ensembling, queried every step; open_loop: play whole chunks
    execution: Literal["ensemble", "open_loop"] = "ensemble"
    ensemble_decay: float = 0.01
    episodes: tuple[int, ...] | None = None  # train on these dataset episodes only (None: all)
    task: str | None = None  # None: the dataset card's task, else the dataset's task text
    seed: int = 0
    device: str | None = None  # cpu or cuda; None: cuda when present
    log_every: int = 50

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)
        self.out = Path(self.out)
        self.labels = Path(self.labels) if self.labels is not None else None
        self.views = tuple(self.views) if self.views else None
        self.episodes = tuple(int(e) for e in self.episodes) if self.episodes is not None else None
        if self.obs not in OBS_MODES:
            raise unknown_name("observation mode", self.obs, OBS_MODES)
        if self.execution not in EXECUTIONS:
            raise unknown_name("execution", self.execution, EXECUTIONS)
        if self.weights not in WEIGHTINGS:
            raise unknown_name("weighting", self.weights, WEIGHTINGS)
        if self.weights == "rabc" and self.labels is None:
            raise HeadwayError("--weights rabc needs progress labels: pass --labels <sarm_progress.parquet or its folder>")
        if self.weights == "success" and self.labels is None:
            raise HeadwayError("--weights success needs a `headway label` folder: pass --labels <folder>")
        if self.weights == "none" and self.labels is not None:
            raise HeadwayError("--labels given but --weights is none; add --weights rabc or --weights success to use them")
        for name in ("chunk", "steps", "batch_size", "hidden", "layers", "image_dim", "log_every"):
            if getattr(self, name) < 1:
                raise HeadwayError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise HeadwayError(f"learning rate must be positive, got {self.lr}")
        if self.image_size is not None and self.image_size < 16:
            raise HeadwayError(f"image size {self.image_size} is too small; use at least 16 pixels")

    @property
    def uses_images(self) -> bool:
        return self.obs in ("images", "state+images")


# -- network -----------------------------------------------------------------------------------
class BCNet(nn.Module):
    """Observation -> normalised action chunk (B, H, A); normalisation statistics are buffers."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        chunk: int,
        views: tuple[str, ...] = (),
        hidden: int = 256,
        layers: int = 3,
        image_dim: int = 64,
    ) -> None:
        super().__init__()
        self.state_dim, self.action_dim, self.chunk, self.views = state_dim, action_dim, chunk, tuple(views)
        self.encoders = nn.ModuleDict({view: ConvEncoder(output_dim=image_dim) for view in self.views})
        width = state_dim + image_dim * len(self.views)
        if width == 0:
            raise HeadwayError("the policy has no inputs: give it a state, cameras, or both")
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU()]
            width = hidden
        self.trunk = nn.Sequential(*blocks)
        self.head = nn.Linear(width, chunk * action_dim)
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))

    def set_statistics(self, state: np.ndarray, actions: np.ndarray) -> None:
        if self.state_dim:
            self.state_mean.copy_(torch.as_tensor(state.mean(0)))
            self.state_std.copy_(torch.as_tensor(np.maximum(state.std(0), MIN_STD)))
        self.action_mean.copy_(torch.as_tensor(actions.mean(0)))
        self.action_std.copy_(torch.as_tensor(np.maximum(actions.std(0), MIN_STD)))

    def forward(self, state: torch.Tensor | None, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Raw state (B, S) and images (B, 3, H, W) in [0, 1] -> normalised chunk (B, H, A)."""
        parts = []
        if self.state_dim:
            assert state is not None
            parts.append((state - self.state_mean) / self.state_std)
        for view in self.views:
            parts.append(self.encoders[view](images[view]))
        out = self.head(self.trunk(torch.cat(parts, dim=-1)))
        return out.view(-1, self.chunk, self.action_dim)

    def normalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def denormalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.action_std + self.action_mean


def per_sample_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 per sample (B,), averaged over the valid chunk steps and action dimensions."""
    error = (prediction - target).abs().mean(-1) * mask
    return error.sum(-1) / mask.sum(-1).clamp(min=1)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-sample losses; with weights, LeRobot's RA-BC: weights rescaled to sum to the batch size."""
    if weights is None:
        return losses.mean()
    normalised = torch.as_tensor(normalise_batch_weights(weights.detach().cpu().numpy()), device=losses.device)
    return (losses * normalised).mean()


def _image_batch(images: dict[str, np.ndarray], index: np.ndarray, device: torch.device, shift: int = 0) -> dict[str, torch.Tensor]:
    """uint8 (N, H, W, 3) per view -> float (B, 3, H, W) in [0, 1]; `shift` applies DrQ's random-shift augmentation."""
    batch = {}
    for view, frames in images.items():
        x = random_shift(torch.from_numpy(frames[index]).to(device).permute(0, 3, 1, 2), shift)
        batch[view] = x.float() / 255.0
    return batch


# -- the policy --------------------------------------------------------------------------------
class BCPolicy:
    """A trained BC network as a headway Policy (see headway.policy.interface)."""

    def __init__(self, net: BCNet, meta: dict[str, Any], device: str | torch.device | None = None) -> None:
        self.device = default_device(device)
        self.net = net.to(self.device).eval()
        self.meta = meta
        self._history: list[tuple[int, np.ndarray]] = []
        self._queue: list[np.ndarray] = []
        self._step = 0

    # Policy protocol
    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.meta["views"])

    @property
    def state_keys(self) -> tuple[str, ...]:
        return tuple(self.meta["state_keys"])

    @property
    def state_dims(self) -> tuple[int, ...]:
        return tuple(self.meta["state_dims"])

    @property
    def state_dim(self) -> int:
        """Length of the proprioceptive `state` the policy reads (0 if it reads cameras only)."""
        return dict(zip(self.state_keys, self.state_dims)).get(STATE_KEY, 0)

    @property
    def object_dim(self) -> int:
        """Length of the object state it reads (0: none, so it needs no simulator-only input)."""
        return dict(zip(self.state_keys, self.state_dims)).get(OBJECT_KEY, 0)

    @property
    def action_dim(self) -> int:
        return int(self.meta["action_dim"])

    @property
    def chunk(self) -> int:
        return int(self.meta["chunk"])

    @property
    def image_size(self) -> int | None:
        return self.meta.get("image_size")

    def reset(self) -> None:
        self._history, self._queue, self._step = [], [], 0

    def _inputs(self, observation: dict) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        parts = []
        for key, dim in zip(self.state_keys, self.state_dims):
            name = "state" if key == STATE_KEY else "object"
            if name not in observation:
                raise HeadwayError(f"observation has no {name!r}; this policy was trained on {key} ({dim} values)")
            value = np.asarray(observation[name], dtype=np.float32).reshape(-1)
            if value.shape != (dim,):
                raise HeadwayError(
                    f"observation {name!r} has {value.shape[0]} values but the policy was trained on {dim} ({key}); "
                    "the checkpoint is for another robot or task layout"
                )
            parts.append(value)
        state = torch.from_numpy(np.concatenate(parts))[None].to(self.device) if parts else None
        images = {}
        for view in self.views:
            frame = observation.get("images", {}).get(view)
            if frame is None:
                raise HeadwayError(f"observation has no image from camera {view!r}; the policy reads {list(self.views)}")
            frame = np.asarray(frame)
            if self.image_size and frame.shape[0] != self.image_size:
                frame = resize_frames(frame[None], self.image_size)[0]
            images[view] = torch.from_numpy(np.ascontiguousarray(frame))[None].to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return state, images

    @torch.no_grad()
    def predict_chunk(self, observation: dict) -> np.ndarray:
        """The whole predicted chunk (H, A) for this observation, in action units."""
        state, images = self._inputs(observation)
        chunk = self.net.denormalise_actions(self.net(state, images))[0]
        return chunk.float().cpu().numpy()

    def act(self, observation: dict) -> np.ndarray:
        if self.meta.get("execution", "ensemble") == "open_loop":
            if not self._queue:
                self._queue = list(self.predict_chunk(observation))
            action = self._queue.pop(0)
        else:
            self._history.append((self._step, self.predict_chunk(observation)))
            self._history = [(s, c) for s, c in self._history if self._step - s < len(c)]
            actions = np.stack([c[self._step - s] for s, c in self._history])  # oldest first
            weights = np.exp(-float(self.meta.get("ensemble_decay", 0.01)) * np.arange(len(actions)))
            action = (weights[:, None] * actions).sum(0) / weights.sum()
        self._step += 1
        return np.asarray(action, dtype=np.float32)

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.net.state_dict(), FORMAT, FORMAT_VERSION, self.meta)

    @classmethod
    def load(cls, path: Path | str, device: str | None = None, task: str | None = None) -> BCPolicy:
        """Open a `headway.bc` checkpoint, checking it is whole and (if `task` is given) for that task."""
        path = Path(path)
        meta = read_checked_config(path, FORMAT, FORMAT_VERSION, "BC policy", "Retrain it with `headway policy bc`")
        needed = ("task", "views", "state_keys", "state_dims", "action_dim", "chunk", "hidden", "layers", "image_dim")
        missing = [k for k in needed if k not in meta]
        if missing:
            raise HeadwayError(f"{path / 'config.json'} lacks {missing}; the checkpoint is damaged. Retrain it")
        if task is not None and meta["task"] != task:
            raise HeadwayError(f"{path} is a policy for task {meta['task']!r}, not {task!r}; pass a checkpoint trained on {task}")
        meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "headway_version")}
        net = BCNet(
            int(sum(meta["state_dims"])),
            int(meta["action_dim"]),
            int(meta["chunk"]),
            tuple(meta["views"]),
            int(meta["hidden"]),
            int(meta["layers"]),
            int(meta["image_dim"]),
        )
        load_state(net, path)
        return cls(net, meta, device)


# -- training ----------------------------------------------------------------------------------
def dataset_task(root: Path) -> str:
    """The headway task name of a dataset (its card's `task`), else its first task text."""
    reader = DatasetReader(root)
    return str(reader.card().get("task") or (reader.tasks[0] if reader.tasks else "unknown"))


def sample_weights(samples: BCSamples, labels: Path, chunk: int, kappa: float = KAPPA) -> np.ndarray:
    """RA-BC weight of every sample (LeRobot's formula over the progress labels of the samples' episodes)."""
    order = list(dict.fromkeys(samples.episode_index.tolist()))
    progress = read_progress(labels, samples.episode_lengths)
    per_episode = rabc_weights([progress[e] for e in order], chunk, kappa=kappa)
    return np.concatenate(per_episode).astype(np.float32)


def weight_shares(weights: np.ndarray, episode_index: np.ndarray) -> dict:
    """How concentrated per-sample weights are: the effective sample share (sum w)^2 / (N sum w^2), 1 for plain
    BC, and each episode's share of the total weight (plain BC: its share of the samples)."""
    weights = np.asarray(weights, dtype=np.float64)
    per_episode = np.bincount(episode_index, weights=weights)
    return {
        "effective_sample_share": float(weights.sum() ** 2 / (weights**2).sum() / len(weights)),
        "weight_share_by_episode": {int(e): float(per_episode[e] / per_episode.sum()) for e in np.unique(episode_index)},
    }


def weight_summary(weights: np.ndarray, episode_index: np.ndarray | None = None) -> dict:
    """RA-BC's weights at a glance; with `episode_index`, also `weight_shares`."""
    summary = {
        "mean_weight": float(weights.mean()),
        "zero_share": float((weights == 0).mean()),
        "full_share": float((weights == 1).mean()),
    }
    return summary | (weight_shares(weights, episode_index) if episode_index is not None else {})


def train_bc(config: BCConfig, progress: bool = True, samples: BCSamples | None = None) -> dict:
    """Train a BC policy and save it at `config.out`; returns a summary (also written to `summary.json`).

    Summary keys: out, task, obs, weights, episodes, samples, steps, first_loss, final_loss, seconds,
    and with RA-BC mean_weight, zero_share, full_share. `samples` may be passed to reuse data
    already loaded with matching settings (chunk, observation mode, episodes).
    """
    if default_device(config.device).type == "cpu":
        with torch_threads(1):
            return _train_bc(config, progress, samples)
    return _train_bc(config, progress, samples)


def provenance_notes(config: BCConfig) -> list[str]:
    """Refuse `headway label` labels made from another dataset (unless `config.force`); returns the warnings.
    A bare sarm_progress.parquet (LeRobot's own labelling) carries no fingerprint and is checked by frame counts only."""
    folder = headway_label_folder(config.labels) if config.labels is not None else None
    if folder is None:
        return []
    notes = check_label_provenance(folder, config.dataset, force=config.force)
    for note in notes:
        print(f"warning: {note}")
    return notes


def _train_bc(config: BCConfig, progress: bool, samples: BCSamples | None) -> dict:
    started = time.perf_counter()
    device = default_device(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    task = config.task or dataset_task(config.dataset)
    episodes = list(config.episodes) if config.episodes is not None else None
    stats: dict = {}
    notes = provenance_notes(config)
    if config.weights == "success":  # success filtering by the labels: keep only what they call successful
        reader = DatasetReader(config.dataset)
        candidates = episodes if episodes is not None else list(range(reader.num_episodes))
        episodes = labelled_successes(config.labels, {e: reader.episode_length(e) for e in candidates})
        if not episodes:
            raise HeadwayError(f"the labels call none of the {len(candidates)} episodes successful; nothing to clone")
        stats = {"kept_episodes": len(episodes), "dropped_episodes": sorted(set(candidates) - set(episodes))}
        if progress:
            print(f"labelled success: cloning {len(episodes)} of {len(candidates)} episodes")
        if samples is not None and list(dict.fromkeys(samples.episode_index.tolist())) != episodes:
            raise HeadwayError("the samples given hold other episodes than the labelled successes; pass none and let them load")
    if samples is None:
        samples = load_bc_samples(
            config.dataset,
            chunk=config.chunk,
            images=config.uses_images,
            views=list(config.views) if config.views else None,
            image_size=config.image_size,
            use_object_state=config.obs == "state",
            episodes=episodes,
            progress=progress,
        )
    if samples.actions.shape[1] != config.chunk:
        raise HeadwayError(f"samples hold chunks of {samples.actions.shape[1]} actions but the config asks for {config.chunk}")
    use_state = config.obs != "images"
    views = tuple(samples.images) if config.uses_images and samples.images else ()
    image_size = int(next(iter(samples.images.values())).shape[1]) if views else None
    weights = None
    if config.weights == "rabc":
        weights = sample_weights(samples, config.labels, config.chunk, config.kappa)
        if not weights.any():
            raise HeadwayError("every RA-BC weight is 0 (no frame makes progress); check the labels")
        stats = weight_summary(weights, samples.episode_index)
        if progress:
            print(
                f"RA-BC weights: mean {stats['mean_weight']:.3f}, zero {100 * stats['zero_share']:.1f}%, "
                f"full {100 * stats['full_share']:.1f}% of {len(weights)} samples"
            )

    state_dims = samples.state_dims if use_state else ()
    state_keys = samples.state_keys if use_state else ()
    state_width = int(sum(state_dims))
    net = BCNet(state_width, samples.action_dim, config.chunk, views, config.hidden, config.layers, config.image_dim)
    net.set_statistics(samples.state[:, :state_width], samples.actions.reshape(-1, samples.action_dim))
    net.to(device).train()
    state_all = torch.from_numpy(samples.state[:, :state_width]).to(device) if state_width else None
    actions_all = net.normalise_actions(torch.from_numpy(samples.actions).to(device))
    mask_all = torch.from_numpy(samples.action_mask).to(device).float()
    weights_all = torch.from_numpy(weights).to(device) if weights is not None else None
    bar = tqdm(range(config.steps), desc=f"bc {config.out.name}", disable=not progress)
    losses = clone_steps(net, state_all, actions_all, mask_all, weights_all, bar, config.lr, config.weight_decay, config.batch_size, rng,
                         samples.images if views else None, config.log_every)

    meta = {
        "task": task,
        "views": list(views),
        "image_size": image_size,
        "obs": config.obs,
        "state_keys": list(state_keys),
        "state_dims": [int(d) for d in state_dims],
        "action_dim": samples.action_dim,
        "chunk": config.chunk,
        "hidden": config.hidden,
        "layers": config.layers,
        "image_dim": config.image_dim,
        "execution": config.execution,
        "ensemble_decay": config.ensemble_decay,
        "train": {
            "dataset": str(config.dataset),
            "weights": config.weights,
            "labels": str(config.labels) if config.labels else None,
            "episodes": len(samples.episode_lengths),
            "episode_ids": [int(e) for e in samples.episode_lengths],
            "samples": len(samples),
            "steps": config.steps,
            "seed": config.seed,
            **stats,
        },
    }
    policy = BCPolicy(net.eval(), meta, device)
    policy.save(config.out)
    summary = {
        "out": str(config.out),
        "task": task,
        "obs": config.obs,
        "weights": config.weights,
        "episodes": len(samples.episode_lengths),
        "samples": len(samples),
        "steps": config.steps,
        "first_loss": float(np.mean(losses[: min(20, len(losses))])),
        "final_loss": float(np.mean(losses[-min(50, len(losses)) :])),
        "seconds": time.perf_counter() - started,
        **stats,
    }
    if notes:
        summary["notes"] = notes
    atomic_write_json(config.out / "summary.json", summary)
    return summary


def clone_steps(net: BCNet, state: torch.Tensor | None, actions: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None,
                steps, lr: float, weight_decay: float, batch_size: int, rng: np.random.Generator,
                images: dict[str, np.ndarray] | None = None, log_every: int = 50) -> list[float]:
    """BC's optimisation: AdamW with a cosine decay of the rate to a tenth over `steps` (a count or a
    tqdm range), L1 on normalised action chunks, RA-BC-normalised weights when given; returns the losses.
    Shared by `headway policy bc` and the online re-cloning of headway/policy/rl_awr.py."""
    total = len(steps) if hasattr(steps, "__len__") else int(steps)
    steps = range(total) if isinstance(steps, int) else steps
    device = actions.device
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))
    batch = min(batch_size, len(actions))
    losses: list[float] = []
    for step in steps:
        index = rng.integers(0, len(actions), batch)
        index_t = torch.from_numpy(index).to(device)
        image_batch = _image_batch(images, index, device, shift=4) if images else None
        prediction = net(state[index_t] if state is not None else None, image_batch)
        sample_losses = per_sample_loss(prediction, actions[index_t], mask[index_t])
        loss = weighted_loss(sample_losses, weights[index_t] if weights is not None else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise HeadwayError(f"BC loss became {losses[-1]} at step {step}; lower --lr or check the dataset for outliers")
        if hasattr(steps, "set_postfix") and (step % log_every == 0 or step == total - 1):
            steps.set_postfix(loss=f"{np.mean(losses[-log_every:]):.4f}")
    net.eval()
    return losses


def config_dict(config: BCConfig) -> dict:
    """The config as JSON-ready values (for logs and reports)."""
    data = asdict(config)
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
