"""Per-view keypoint heatmaps: a small U-Net shared across views, one channel per named keypoint,
sub-pixel decoding and a confidence (probability the point is visible) per keypoint.

The network sees one view at a time (with a learned embedding of which view it is, since a point
in the air, such as a lift target, sits at a view-dependent place relative to the object) and
returns heatmap logits at 1/`output_stride` of the input resolution. Decoding takes each
channel's argmax and refines it with a quadratic (log-Gaussian) fit through the neighbouring
logits, which is exact for a Gaussian peak.

The config also carries what a keypoint reward needs from the task: each stage's target keypoint
and mover (`stage_targets`, read at training time from the dataset's `meta/headway.json`).

Checkpoints are folders with `config.json` (format "headway.keypoints") and `model.safetensors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headway.checkpoint import load_state, read_checked_config, save_checkpoint
from headway.errors import HeadwayError, unknown_name
from headway.geometry import rescale_pixels
from headway.perception.preprocess import resize_frames
from headway.runtime import default_device

FORMAT = "headway.keypoints"
FORMAT_VERSION = 1
GRIPPER = "gripper"  # the mover of reaching stages (a keypoint model may predict it; a reward may read it from the state)

StageTargets = tuple[tuple[str, str], ...]


def parse_stage_targets(value: str | Sequence, keypoint_names: Sequence[str] | None = None) -> StageTargets:
    """Per-stage (target keypoint, mover) pairs from pairs such as [["grasp", "gripper"], ...] or text such
    as "grasp:gripper,grasp:gripper,lift_target:grasp" (a stage given as TARGET alone moves the gripper);
    every name must be one of `keypoint_names`, when given."""
    if not isinstance(value, (str, list, tuple)):
        raise HeadwayError(f"stage targets are a list of [TARGET, MOVER] pairs or text TARGET:MOVER,..., got {value!r}")
    items = [item for item in value.split(",") if item.strip()] if isinstance(value, str) else value
    targets = []
    for item in items:
        pair = item.split(":") if isinstance(item, str) else list(item) if isinstance(item, (list, tuple)) else []
        if len(pair) == 1:
            pair.append(GRIPPER)
        if len(pair) != 2 or not all(isinstance(name, str) and name.strip() for name in pair):
            raise HeadwayError(f"a stage target is TARGET:MOVER (two keypoint names), got {item!r}")
        targets.append((pair[0].strip(), pair[1].strip()))
    if keypoint_names is not None:
        for name in {name for pair in targets for name in pair}:
            if name not in keypoint_names:
                raise HeadwayError(f"stage target keypoint {name!r} is not one of the keypoints {', '.join(keypoint_names)}")
    return tuple(targets)


@dataclass
class KeypointModelConfig:
    """Architecture and what the model predicts."""

    keypoint_names: tuple[str, ...]
    views: tuple[str, ...]
    task: str = ""
    image_size: int = 84
    width: int = 16
    output_stride: int = 2  # heatmaps at image_size / output_stride
    sigma: float = 1.0  # target Gaussian width, in heatmap cells
    intrinsics: dict[str, list[list[float]]] = field(default_factory=dict)  # view -> 3x3 at image_size
    # per stage of the task: (target keypoint, mover); empty in checkpoints from before headway stored them
    stage_targets: StageTargets = ()

    def __post_init__(self) -> None:
        self.keypoint_names = tuple(self.keypoint_names)
        self.views = tuple(self.views)
        if not self.keypoint_names:
            raise HeadwayError("a keypoint model needs at least one keypoint name")
        if len(set(self.keypoint_names)) != len(self.keypoint_names):
            raise HeadwayError(f"keypoint names repeat: {list(self.keypoint_names)}")
        self.stage_targets = parse_stage_targets(self.stage_targets, self.keypoint_names)
        if not self.views:
            raise HeadwayError("a keypoint model needs at least one camera view")
        if self.output_stride not in (2, 4):
            raise HeadwayError(f"output_stride must be 2 or 4, got {self.output_stride}")
        if self.image_size % self.output_stride:
            raise HeadwayError(f"image size {self.image_size} is not divisible by the output stride {self.output_stride}")
        if self.image_size < 16 or self.width < 4 or self.sigma <= 0:
            raise HeadwayError(f"keypoint model config out of range: size {self.image_size}, width {self.width}, sigma {self.sigma}")

    @property
    def heatmap_size(self) -> int:
        return self.image_size // self.output_stride

    def to_dict(self) -> dict:
        data = asdict(self)
        data["keypoint_names"] = list(self.keypoint_names)
        data["views"] = list(self.views)
        data["stage_targets"] = [list(pair) for pair in self.stage_targets]
        return data


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class KeypointNet(nn.Module):
    """U-Net: a stride-2 stem, two more stride-2 stages, a decoder back to the heatmap resolution
    (1/2 or 1/4) with skip connections; 2K output channels (K heatmap logits, K visibility maps)."""

    def __init__(self, config: KeypointModelConfig) -> None:
        super().__init__()
        self.config = config
        w, k = config.width, len(config.keypoint_names)
        self.down1 = _block(3, w, 2)  # /2
        self.down2 = _block(w, 2 * w, 2)  # /4
        self.down3 = _block(2 * w, 4 * w, 2)  # /8
        self.view_embedding = nn.Embedding(len(config.views), 4 * w)
        self.up2_proj = nn.Conv2d(4 * w, 2 * w, 1)
        self.up2 = _block(2 * w, 2 * w)
        self.up1_proj = nn.Conv2d(2 * w, w, 1)
        self.up1 = _block(w, w) if config.output_stride == 2 else None
        head_width = w if config.output_stride == 2 else 2 * w
        self.head = nn.Sequential(
            nn.Conv2d(head_width, head_width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(head_width, 2 * k, 1)
        )

    def forward(self, images: torch.Tensor, view_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) in [0, 1], (N,) view indices -> heatmap logits (N, K, h, w), visibility logits (N, K)."""
        x1 = self.down1(images * 2.0 - 1.0)
        x2 = self.down2(x1)
        x3 = self.down3(x2) + self.view_embedding(view_ids)[:, :, None, None]
        y = self.up2(self.up2_proj(F.interpolate(x3, size=x2.shape[-2:], mode="bilinear", align_corners=False)) + x2)
        if self.up1 is not None:
            y = self.up1(self.up1_proj(F.interpolate(y, size=x1.shape[-2:], mode="bilinear", align_corners=False)) + x1)
        out = self.head(y)
        k = len(self.config.keypoint_names)
        heatmaps, visibility = out[:, :k], out[:, k:]
        cells = visibility.shape[-1] * visibility.shape[-2]
        return heatmaps, torch.logsumexp(visibility.flatten(2), dim=-1) - float(np.log(cells))


def cell_to_pixel(cells: np.ndarray | torch.Tensor, stride: int):
    """Heatmap cell coordinates -> input pixel coordinates (pixel centres at integers)."""
    return (cells + 0.5) * stride - 0.5


def pixel_to_cell(pixels: np.ndarray | torch.Tensor, stride: int):
    return (pixels + 0.5) / stride - 0.5


def decode_heatmaps(logits: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) logits -> (N, K, 2) sub-pixel peak positions (x, y) in heatmap cells.

    Argmax, then per axis the vertex of the parabola through the logits at the peak and its two
    neighbours (exact when the logits are a sampled Gaussian's log); offsets clamped to +-0.5.
    """
    n, k, h, w = logits.shape
    flat = logits.reshape(n, k, -1)
    index = flat.argmax(-1)
    y, x = (index // w), (index % w)

    def at(dy: int, dx: int) -> torch.Tensor:
        yy = (y + dy).clamp(0, h - 1)
        xx = (x + dx).clamp(0, w - 1)
        return flat.gather(-1, (yy * w + xx).unsqueeze(-1)).squeeze(-1)

    centre = at(0, 0)
    offsets = []
    for (a, b), inside in (((at(0, -1), at(0, 1)), (x > 0) & (x < w - 1)), ((at(-1, 0), at(1, 0)), (y > 0) & (y < h - 1))):
        curvature = a - 2 * centre + b
        offset = torch.where(curvature < -1e-6, 0.5 * (a - b) / curvature.clamp(max=-1e-6), torch.zeros_like(centre))
        offsets.append(torch.where(inside, offset.clamp(-0.5, 0.5), torch.zeros_like(centre)))
    return torch.stack([x.float() + offsets[0], y.float() + offsets[1]], dim=-1)


def gaussian_targets(cells: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(N, K, 2) cell positions -> (N, K, size, size) normalised Gaussian distributions."""
    grid = torch.arange(size, dtype=torch.float32, device=cells.device)
    gx = torch.exp(-0.5 * ((grid[None, None, :] - cells[..., 0:1]) / sigma) ** 2)
    gy = torch.exp(-0.5 * ((grid[None, None, :] - cells[..., 1:2]) / sigma) ** 2)
    target = gy[..., :, None] * gx[..., None, :]
    return target / target.sum(dim=(-1, -2), keepdim=True).clamp_min(1e-12)


def keypoint_loss(
    heatmaps: torch.Tensor, visibility_logits: torch.Tensor, cells: torch.Tensor, visible: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of each visible keypoint's heatmap (as a distribution over cells) against a
    Gaussian at its true position, plus binary cross-entropy on visibility."""
    n, k, h, w = heatmaps.shape
    target = gaussian_targets(cells, h, sigma)
    log_probs = F.log_softmax(heatmaps.reshape(n, k, -1), dim=-1)
    ce = -(target.reshape(n, k, -1) * log_probs).sum(-1)
    mask = visible.float()
    heat_loss = (ce * mask).sum() / mask.sum().clamp_min(1.0)
    vis_loss = F.binary_cross_entropy_with_logits(visibility_logits, mask)
    return heat_loss + vis_loss, {"heatmap": float(heat_loss.detach()), "visibility": float(vis_loss.detach())}


@dataclass
class KeypointPrediction:
    """Per frame and keypoint: pixel position (x, y) in the frames asked for, and a confidence in [0, 1]."""

    uv: np.ndarray  # (N, K, 2)
    confidence: np.ndarray  # (N, K)


class KeypointModel:
    """A trained keypoint network with its config, pre- and post-processing, save and load."""

    def __init__(self, net: KeypointNet, device: str | torch.device | None = None) -> None:
        self.device = default_device(device)
        self.net = net.to(self.device).eval()
        self.config: KeypointModelConfig = net.config

    @classmethod
    def create(cls, config: KeypointModelConfig, device: str | None = None) -> KeypointModel:
        return cls(KeypointNet(config), device)

    def view_index(self, view: str) -> int:
        if view not in self.config.views:
            raise unknown_name("camera view of this keypoint model", view, self.config.views)
        return self.config.views.index(view)

    def intrinsics(self, view: str, image_size: int | None = None) -> np.ndarray:
        """The view's 3x3 intrinsics, rescaled to `image_size` (default: the model's size)."""
        self.view_index(view)
        if view not in self.config.intrinsics:
            raise HeadwayError(
                f"camera {view!r} has no calibration in this keypoint model; train it on a dataset whose "
                "meta/headway.json holds intrinsics (headway sim collect writes them)"
            )
        K = np.array(self.config.intrinsics[view], dtype=np.float64)
        if image_size is not None and image_size != self.config.image_size:
            scale = image_size / self.config.image_size
            K[:2, :2] *= scale
            K[:2, 2] = (K[:2, 2] + 0.5) * scale - 0.5  # pixel centres at integers
        return K

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 at any size -> (N, 3, S, S) float at the model's size."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise HeadwayError(f"keypoint model takes (N, H, W, 3) RGB frames, got shape {images.shape}")
        images = resize_frames(images, self.config.image_size)
        return torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0

    @torch.no_grad()
    def predict(
        self, images: np.ndarray, view: str, batch_size: int = 128, output_size: tuple[int, int] | None = None
    ) -> KeypointPrediction:
        """Keypoints of every frame of one view; positions in pixels of the input frames' size, or of the
        same view at `output_size` (height, width), such as the size its calibration is for."""
        index = self.view_index(view)
        frame_size = tuple(output_size) if output_size is not None else np.asarray(images).shape[1:3]
        uvs, confidences = [], []
        for start in range(0, len(images), batch_size):
            batch = self.to_tensor(images[start : start + batch_size])
            ids = torch.full((batch.shape[0],), index, dtype=torch.long, device=self.device)
            heatmaps, visibility = self.net(batch, ids)
            uv = cell_to_pixel(decode_heatmaps(heatmaps), self.config.output_stride)
            uvs.append(uv.cpu().numpy())
            confidences.append(torch.sigmoid(visibility).cpu().numpy())
        size = self.config.image_size
        uv = rescale_pixels(np.concatenate(uvs), (size, size), frame_size)
        return KeypointPrediction(uv, np.concatenate(confidences).astype(np.float64))

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write `config.json` and `model.safetensors` to the folder `path` (each atomically)."""
        save_checkpoint(path, self.net.state_dict(), FORMAT, FORMAT_VERSION, {"model": self.config.to_dict()})

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> KeypointModel:
        """Load a checkpoint folder, checking its format and version first."""
        fix = "Retrain it with `headway keypoints train`"
        meta = read_checked_config(path, FORMAT, FORMAT_VERSION, "keypoint model", fix)
        try:
            config = KeypointModelConfig(**meta["model"])
        except TypeError as error:
            raise HeadwayError(f"{Path(path) / 'config.json'} has an invalid model config ({error}). {fix}") from None
        net = KeypointNet(config)
        load_state(net, path)
        return cls(net, device)
