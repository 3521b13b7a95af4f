"""headway's stage-aware reward model behind lerobot's `PreTrainedRewardModel` API.

`compute_reward(batch)` takes a batch built by lerobot's `LeRobotDataset` with the config's
`observation_delta_indices` (camera tensors (B, 1 + window, 3, H, W) in [0, 1]) and returns each
sample's progress in [0, 1]; `score(batch)` also returns stage, stage probabilities, success and
ensemble uncertainty. Scores match `StageRewardModel.score_episode` on the same decoded frames.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lerobot.rewards.pretrained import PreTrainedRewardModel

from headway.errors import HeadwayError
from headway.reward.configuration_headway import HeadwayConfig
from headway.reward.stage_reward import StageRewardModel


class HeadwayRewardModel(PreTrainedRewardModel):
    config_class = HeadwayConfig
    name = "headway"

    def __init__(self, config: HeadwayConfig, **kwargs) -> None:
        super().__init__(config)
        if not config.pretrained_path:
            raise HeadwayError("lerobot's `headway` reward type needs pretrained_path=<headway reward-model folder>")
        self.headway = StageRewardModel.load(Path(config.pretrained_path), device="cpu")
        self.net = self.headway.net  # registered, so lerobot's .to(device) moves it

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | Path, *, config: HeadwayConfig | None = None, **kwargs):
        """Load a headway checkpoint folder (headway's own format, not lerobot's safetensors layout)."""
        config = config or HeadwayConfig(pretrained_path=str(pretrained_name_or_path))
        config.pretrained_path = str(pretrained_name_or_path)
        model = cls(config)
        model.to(config.device or "cpu")
        return model.eval()

    def to(self, *args, **kwargs):
        module = super().to(*args, **kwargs)
        self.headway.device = next(self.net.parameters()).device
        return module

    def compute_reward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.score(batch)["progress"]

    @torch.no_grad()
    def score(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Progress, stage, stage_probs, success and uncertainty of each sample's newest frame."""
        config, model = self.config, self.headway
        device = model.device
        frames = [self._view_frames(batch, view) for view in model.views]
        count, slots = frames[0].shape[:2]
        if slots != config.window + 1:
            raise HeadwayError(
                f"the batch holds {slots} frames per sample; this model needs {config.window + 1} "
                "(build the LeRobotDataset with delta_timestamps from the config's observation_delta_indices)"
            )
        images = torch.stack(frames, 2).flatten(0, 1).to(device)  # (B * slots, V, 3, S, S)
        present = torch.ones(images.shape[:2], dtype=torch.bool, device=device)
        tokens = model.net.frame_tokens(model.net.view_features(images), present).view(count, slots, -1)
        recent = torch.tensor(config.observation_delta_indices[1:], device=device)  # (window,) <= 0
        now = self._frame_index(batch, count).to(device)
        indices = torch.cat([torch.zeros_like(now)[:, None], now[:, None] + recent[None, :]], 1)  # slot 0: frame 0
        valid = indices >= 0
        valid[:, 0] = True
        times = indices.clamp(min=0).float() / model.config.fps
        output = model._output(model.net.temporal_forward(tokens, valid, times, self._tasks(batch, count)))
        fields = ("progress", "stage", "stage_probs", "success", "uncertainty")
        return {name: torch.from_numpy(getattr(output, name)) for name in fields}

    def _view_frames(self, batch: dict[str, Tensor], view: str) -> Tensor:
        key = self.config.camera_key(view)
        if key not in batch:
            cameras = sorted(k for k in batch if k.startswith("observation.images"))
            raise HeadwayError(
                f"the batch has no {key!r} for the model's view {view!r}; model views {list(self.headway.views)}, "
                f"batch cameras {cameras}. Map them with camera_keys={{view: key}}"
            )
        frames = batch[key].float()
        if frames.dim() == 4:  # (B, 3, H, W): no window was fetched
            frames = frames[:, None]
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise HeadwayError(f"{key}: expected (B, T, 3, H, W) frames in [0, 1], got shape {tuple(frames.shape)}")
        size = self.headway.image_size
        if frames.shape[-2:] != (size, size):
            count, slots = frames.shape[:2]
            frames = F.interpolate(frames.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False).view(count, slots, 3, size, size)
        return frames

    def _frame_index(self, batch: dict[str, Tensor], count: int) -> Tensor:
        if "frame_index" not in batch:
            raise HeadwayError("the batch has no `frame_index`; headway's causal window needs each sample's frame in its episode")
        return torch.as_tensor(batch["frame_index"]).reshape(count).long()

    def _tasks(self, batch: dict[str, Tensor], count: int) -> list[str]:
        tasks = batch.get("task", self.config.task)
        if tasks is None:
            raise HeadwayError("the batch has no `task` strings; set the config's task=<instruction>")
        return [tasks] * count if isinstance(tasks, str) else list(tasks)
