"""The stage-aware multi-view process reward model.

Per frame: each view is encoded, tagged with a learned view embedding, and fused by attention
across whichever views are present (so any non-empty subset of the trained views can be scored).
Per time step t: a transformer reads the episode's first frame plus W recent frames taken every
`stride` frames (t-(W-1)*stride .. t, never later; a stride above 1 lets the same W slots see long
enough to tell a stalled robot from one about to move), with the task text (hashed words, or a frozen
sentence encoder's embedding: `text_encoder.py`) and the frames' time offsets (and, only if
configured, the absolute elapsed time, which lets a model learn the demonstrator's pace instead
of the scene), and heads predict the stage,
the progress within each stage, and success. An ensemble of heads gives an uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from headway.errors import HeadwayError
from headway.perception.encoders import FrameEncoder, build_encoder
from headway.reward.labels import StagePrior
from headway.reward.task_text import TEXT_BUCKETS, task_batch
from headway.reward.text_encoder import HASHED, check_text_encoder, is_hashed, load_text_tower


@dataclass
class StageModelConfig:
    """Architecture and the facts a checkpoint must carry (views, stages, prior, encoder)."""

    views: tuple[str, ...]
    stage_names: tuple[str, ...]
    stage_proportions: tuple[float, ...]
    image_size: int = 84
    encoder: str = "conv"
    dim: int = 128
    window: int = 8
    stride: int = 1  # frames between consecutive recent-window slots
    layers: int = 2
    heads: int = 4
    ensemble: int = 3
    fps: float = 20.0
    elapsed_time: bool = False  # feed absolute episode time (checkpoints before this option did)
    tasks: tuple[str, ...] = field(default_factory=tuple)
    # task text: "hashed" (hashed words and word pairs; checkpoints without this field), "minilm" (the
    # packaged all-MiniLM-L6-v2) or "hf:<folder or cached hub id>": a frozen text tower (text_encoder.py)
    text_encoder: str = HASHED

    def __post_init__(self) -> None:
        self.views = tuple(self.views)
        self.stage_names = tuple(self.stage_names)
        self.stage_proportions = tuple(float(p) for p in self.stage_proportions)
        self.tasks = tuple(self.tasks)
        if not self.views:
            raise HeadwayError("a reward model needs at least one camera view")
        if self.window < 1 or self.stride < 1 or self.ensemble < 1 or self.dim % self.heads:
            raise HeadwayError(
                f"bad model sizes: window={self.window}, stride={self.stride}, ensemble={self.ensemble}, dim={self.dim}, heads={self.heads}"
            )
        self.prior  # validates the proportions
        self.text_encoder = str(self.text_encoder).strip()
        check_text_encoder(self.text_encoder)

    @property
    def prior(self) -> StagePrior:
        return StagePrior(self.stage_names, self.stage_proportions)

    def to_dict(self) -> dict:
        """The settings a checkpoint stores. A hashed-text model leaves `text_encoder` out, so its
        config.json is exactly what it was before the option (and older headway versions read it)."""
        settings = asdict(self)
        if is_hashed(self.text_encoder):
            del settings["text_encoder"]
        return settings


class ViewFusion(nn.Module):
    """A learned query attends over the present views' tokens (absent views are masked out)."""

    def __init__(self, dim: int, views: int, heads: int) -> None:
        super().__init__()
        self.view_embedding = nn.Parameter(torch.randn(views, dim) * 0.02)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # tokens (N, V, D), present (N, V) bool -> (N, D)
        keys = tokens + self.view_embedding
        query = self.query.expand(tokens.shape[0], -1, -1)
        fused, _ = self.attention(query, keys, keys, key_padding_mask=~present)
        masked_mean = (tokens * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(min=1)
        return self.norm(fused[:, 0] + masked_mean)


class Heads(nn.Module):
    """Stage logits, per-stage progress (tau) and success logit, for each ensemble member."""

    def __init__(self, dim: int, stages: int, members: int) -> None:
        super().__init__()
        self.stages = stages
        self.members = members
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, members * (2 * stages + 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(x).view(x.shape[0], self.members, 2 * self.stages + 1)
        return out[..., : self.stages], torch.sigmoid(out[..., self.stages : 2 * self.stages]), out[..., -1]


class StageRewardNet(nn.Module):
    """Encoder + view fusion + causal window transformer + ensemble heads."""

    def __init__(self, config: StageModelConfig, encoder: FrameEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else build_encoder(config.encoder)
        dim = config.dim
        self.view_projection = nn.Linear(self.encoder.output_dim, dim)
        self.fusion = ViewFusion(dim, len(config.views), config.heads)
        self.slot_embedding = nn.Parameter(torch.randn(config.window + 1, dim) * 0.02)  # slot 0: first frame
        self.time_projection = nn.Linear(2, dim)
        if is_hashed(config.text_encoder):
            self.task_embedding = nn.EmbeddingBag(TEXT_BUCKETS, dim, mode="mean")
            self.text_tower = None
        else:  # a frozen tower (a plain attribute: not in parameters or state dict) and a trained projection
            self.text_tower = load_text_tower(config.text_encoder)
            self.task_projection = nn.Linear(self.text_tower.dim, dim)
        layer = nn.TransformerEncoderLayer(dim, config.heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(dim)
        self.heads = Heads(dim, len(config.stage_names), config.ensemble)
        self.register_buffer("cumulative", torch.tensor(config.prior.cumulative[:-1], dtype=torch.float32))
        self.register_buffer("alpha", torch.tensor(config.stage_proportions, dtype=torch.float32))

    # -- per frame ---------------------------------------------------------------------------------
    def view_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, V, 3, H, W) float in [0, 1] -> encoder features (N, V, E)."""
        n, v = images.shape[:2]
        return self.encoder(images.flatten(0, 1)).view(n, v, -1)

    def frame_tokens(self, features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Encoder features (N, V, E) and view presence (N, V) -> one fused token per frame (N, D)."""
        return self.fusion(self.view_projection(features), present)

    # -- task text ---------------------------------------------------------------------------------
    def task_vectors(self, tasks: Sequence[str] | torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Task strings (B,) -> (B, D) by the configured text encoder. A hashed-text model also takes
        the (ids, offsets) pair of `task_text.task_batch`, as its callers passed before text towers."""
        device = self.slot_embedding.device
        if isinstance(tasks, torch.Tensor):
            if self.text_tower is not None:
                raise HeadwayError(
                    f"this model reads its task text with {self.config.text_encoder}: pass the task strings, not hashed ids"
                )
            return self.task_embedding(tasks.to(device), offsets.to(device))
        if self.text_tower is None:
            ids, offsets = task_batch(list(tasks))
            return self.task_embedding(ids.to(device), offsets.to(device))
        # unit vectors scaled to unit-variance components, so the projection starts at the size of the tokens
        embeddings = self.text_tower.embed(tasks).to(device) * math.sqrt(self.text_tower.dim)
        return self.task_projection(embeddings)

    # -- per time step -----------------------------------------------------------------------------
    def temporal_forward(
        self,
        window_tokens: torch.Tensor,
        window_valid: torch.Tensor,
        window_times: torch.Tensor,
        tasks: Sequence[str] | torch.Tensor,
        task_offsets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Windows (B, W+1, D) = [first frame, oldest .. newest recent frame] -> predictions for the newest.

        `window_valid` (B, W+1) marks real slots (early in an episode some recent slots are empty);
        `window_times` (B, W+1) are the frames' elapsed times in seconds; `tasks` the B task strings
        (see `task_vectors`).
        """
        task = self.task_vectors(tasks, task_offsets)[:, None, :]
        absolute = window_times / 10.0 if self.config.elapsed_time else torch.zeros_like(window_times)
        elapsed = torch.stack([absolute, (window_times[:, -1:] - window_times) / 2.0], dim=-1)
        x = window_tokens + self.slot_embedding + self.time_projection(elapsed) + task
        x = self.temporal(x, src_key_padding_mask=~window_valid)
        stage_logits, tau, success_logit = self.heads(self.out_norm(x[:, -1]))
        stage_probs = stage_logits.softmax(-1)
        progress = (stage_probs * (self.cumulative + self.alpha * tau)).sum(-1)  # (B, members)
        return {
            "stage_logits": stage_logits,
            "stage_probs": stage_probs,
            "tau": tau,
            "success_logit": success_logit,
            "progress": progress,
        }


def window_indices(times: np.ndarray | int, window: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """For each time step t: frame indices [0, t-(W-1)*stride, ..., t-stride, t] (W+1 slots) and which
    slots are real.

    Slots before the episode start are marked invalid (their index is clamped to 0 and masked).
    """
    t = np.atleast_1d(np.asarray(times))[:, None]
    recent = t - stride * np.arange(window - 1, -1, -1)[None, :]
    valid_recent = recent >= 0
    indices = np.concatenate([np.zeros_like(t), np.maximum(recent, 0)], axis=1)
    valid = np.concatenate([np.ones_like(t, dtype=bool), valid_recent], axis=1)
    return indices, valid


