"""`StageRewardModel`: the stage-aware PRM behind headway's reward-model protocol, with save/load."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from headway.checkpoint import load_state, read_checked_config, save_checkpoint
from headway.errors import HeadwayError, unknown_name
from headway.runtime import default_device
from headway.reward.interface import RewardOutput
from headway.reward.stage_model import StageModelConfig, StageRewardNet, window_indices

FORMAT = "headway.stage_reward"
FORMAT_VERSION = 1


class StageRewardModel:
    """Scores multi-view episodes offline in batches, or online one step at a time, with the same numbers."""

    def __init__(self, net: StageRewardNet, device: str | torch.device | None = None) -> None:
        self.device = default_device(device)
        self.net = net.to(self.device).eval()
        self.config: StageModelConfig = net.config

    # -- protocol properties -------------------------------------------------------------------------
    @property
    def views(self) -> tuple[str, ...]:
        return self.config.views

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.config.stage_names

    @property
    def image_size(self) -> int:
        return self.config.image_size

    # -- input checks --------------------------------------------------------------------------------
    def check_views(self, views) -> list[str]:
        views = list(views)
        if not views:
            raise HeadwayError(f"no camera views given; this model knows {', '.join(self.views)}")
        for view in views:
            if view not in self.views:
                raise unknown_name("view of this model", view, self.views)
        return views

    def check_images(self, images: dict[str, np.ndarray], single: bool = False) -> int:
        """Validate frames: known views, (T,)H,W,3 uint8 at the model's size, equal lengths. Returns T."""
        self.check_views(images)
        lengths = set()
        for view, frames in images.items():
            frames = np.asarray(frames)
            expected_dims = 3 if single else 4
            if frames.ndim != expected_dims:
                raise HeadwayError(f"view {view!r}: expected {'H x W x 3' if single else 'T x H x W x 3'} frames, got shape {frames.shape}")
            height, width, channels = frames.shape[-3:]
            if channels != 3:
                if frames.shape[-3] == 3:
                    raise HeadwayError(f"view {view!r}: frames look channels-first {frames.shape}; pass channels-last RGB (H x W x 3)")
                raise HeadwayError(f"view {view!r}: frames have {channels} channels; pass RGB (H x W x 3)")
            if (height, width) != (self.image_size, self.image_size):
                raise HeadwayError(
                    f"view {view!r}: frames are {height}x{width} but the model takes {self.image_size}x{self.image_size}; "
                    "resize them first (headway's labelling does this for you)"
                )
            if frames.dtype != np.uint8:
                raise HeadwayError(f"view {view!r}: frames are {frames.dtype}; pass uint8 RGB in 0-255")
            lengths.add(1 if single else frames.shape[0])
        if len(lengths) != 1:
            raise HeadwayError(f"views have different frame counts: { {v: len(f) for v, f in images.items()} }")
        length = lengths.pop()
        if length == 0:
            raise HeadwayError("the episode is empty: no frames to score")
        return length

    @staticmethod
    def check_state(state: np.ndarray | None) -> None:
        if state is not None and not np.all(np.isfinite(np.asarray(state, dtype=np.float64))):
            raise HeadwayError("the state contains NaN or inf; fix the recording or pass state=None")

    # -- scoring -------------------------------------------------------------------------------------
    def _view_tensor(self, images: dict[str, np.ndarray], start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.image_size
        present = torch.zeros(stop - start, len(self.views), dtype=torch.bool, device=self.device)
        slots = []
        for slot, view in enumerate(self.views):
            if view in images:
                slots.append(torch.from_numpy(np.ascontiguousarray(images[view][start:stop])))
                present[:, slot] = True
            else:
                slots.append(torch.zeros(stop - start, size, size, 3, dtype=torch.uint8))
        # permute and copy as uint8 (4x less memory traffic than in float), then scale once
        frames = torch.stack(slots, 1).to(self.device).permute(0, 1, 4, 2, 3).contiguous()
        return frames.float().div_(255.0), present

    @torch.no_grad()
    def frame_tokens(self, images: dict[str, np.ndarray], batch_size: int = 256) -> torch.Tensor:
        """One fused token per frame (T, D), encoded in batches."""
        length = self.check_images(images)
        tokens = []
        for start in range(0, length, batch_size):
            batch, present = self._view_tensor(images, start, min(start + batch_size, length))
            tokens.append(self.net.frame_tokens(self.net.view_features(batch), present))
        return torch.cat(tokens)

    @torch.no_grad()
    def score_tokens(self, tokens: torch.Tensor, task: str, batch_size: int = 1024) -> RewardOutput:
        """Score every time step from its causal window of frame tokens."""
        length = tokens.shape[0]
        indices, valid = window_indices(np.arange(length), self.config.window, self.config.stride)
        parts = []
        for start in range(0, length, batch_size):
            stop = min(start + batch_size, length)
            idx = torch.from_numpy(indices[start:stop]).to(self.device)
            windows = tokens[idx]
            valid_t = torch.from_numpy(valid[start:stop]).to(self.device)
            times = idx.float() / self.config.fps
            parts.append(self._output(self.net.temporal_forward(windows, valid_t, times, [task] * (stop - start))))
        return RewardOutput.concatenate(parts)

    def score_episode(
        self, images: dict[str, np.ndarray], task: str, state: np.ndarray | None = None, batch_size: int = 256
    ) -> RewardOutput:
        self.check_state(state)
        return self.score_tokens(self.frame_tokens(images, batch_size), task)

    @staticmethod
    def _output(prediction: dict[str, torch.Tensor]) -> RewardOutput:
        progress = prediction["progress"].clamp(0.0, 1.0)
        stage_probs = prediction["stage_probs"].mean(1)
        return RewardOutput(
            progress=progress.mean(1).cpu().numpy().astype(np.float32),
            stage=stage_probs.argmax(-1).cpu().numpy().astype(np.int64),
            stage_probs=stage_probs.cpu().numpy().astype(np.float32),
            success=torch.sigmoid(prediction["success_logit"]).mean(1).cpu().numpy().astype(np.float32),
            uncertainty=(progress.std(1, unbiased=False) if progress.shape[1] > 1 else progress[:, 0] * 0)
            .cpu()
            .numpy()
            .astype(np.float32),
        )

    def stream(self, task: str) -> StageStreamingScorer:
        return StageStreamingScorer(self, task)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write `config.json` and `model.safetensors` to the folder `path` (atomically per file)."""
        state = self.net.state_dict()
        if not self.net.encoder.trainable:  # frozen towers reload from their own path or hub id
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        save_checkpoint(path, state, FORMAT, FORMAT_VERSION, {"model": self.config.to_dict()})

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> StageRewardModel:
        """Load a checkpoint folder, checking its format and version first."""
        meta = read_checked_config(path, FORMAT, FORMAT_VERSION, "stage-aware reward model", "Retrain it with `headway reward train`")
        # format-1 checkpoints from before the option saw time; those without text_encoder are "hashed"
        settings = {"elapsed_time": True, **meta["model"]}
        net = StageRewardNet(StageModelConfig(**settings))
        frozen_tower = not net.encoder.trainable
        load_state(net, path, ignore=lambda key: frozen_tower and key.startswith("encoder."))
        return cls(net, device)


class StageStreamingScorer:
    """Online scoring: the first frame and the frame tokens the recent window still needs, one new
    observation per step."""

    def __init__(self, model: StageRewardModel, task: str) -> None:
        self.model = model
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.first: torch.Tensor | None = None
        config = self.model.config
        self.recent: deque[torch.Tensor] = deque(maxlen=(config.window - 1) * config.stride + 1)

    @torch.no_grad()
    def step(self, images: dict[str, np.ndarray], state: np.ndarray | None = None) -> RewardOutput:
        model = self.model
        model.check_images(images, single=True)
        model.check_state(state)
        batch, present = model._view_tensor({v: np.asarray(f)[None] for v, f in images.items()}, 0, 1)
        token = model.net.frame_tokens(model.net.view_features(batch), present)[0]
        if self.first is None:
            self.first = token
        self.recent.append(token)
        indices, valid = window_indices(self.t, model.config.window, model.config.stride)
        oldest_kept = self.t - len(self.recent) + 1
        # slots before the episode start are masked; they hold the first frame, as offline scoring's do
        window = [self.recent[i - oldest_kept] if i >= oldest_kept else self.first for i in indices[0, 1:]]
        windows = torch.stack([self.first, *window])[None]
        times = torch.from_numpy(indices).float().to(model.device) / model.config.fps
        prediction = model.net.temporal_forward(windows, torch.from_numpy(valid).to(model.device), times, [self.task])
        self.t += 1
        return model._output(prediction)
