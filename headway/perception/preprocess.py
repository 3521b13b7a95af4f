"""Image preprocessing shared by training, evaluation and labelling (opencv)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) with area interpolation; unchanged if already that size."""
    import cv2

    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def random_shift(images: torch.Tensor, pad: int, groups: torch.Tensor | None = None) -> torch.Tensor:
    """DrQ's augmentation: each image (N, C, H, W) moved by a random whole-pixel offset of up to
    `pad` pixels, borders repeated. Small training sets of rendered scenes are otherwise memorised
    pixel by pixel. `groups` (N,) of ids 0..G-1 gives images that share one offset, as DrQ shifts a
    whole frame stack alike: motion between a camera's frames then survives the augmentation.
    Without it every image has its own. Any dtype (uint8 is cheapest); draws from torch's global
    generator, so seeded and resumed runs repeat it."""
    import torch
    import torch.nn.functional as F

    if pad <= 0:
        return images
    n, channels, height, width = images.shape
    padded = F.pad(images, (pad,) * 4, mode="replicate")
    if groups is None:
        offsets = torch.randint(0, 2 * pad + 1, (2, n), device=images.device)
    else:
        groups = groups.to(images.device)
        offsets = torch.randint(0, 2 * pad + 1, (2, int(groups.max()) + 1), device=images.device)[:, groups]
    rows = images.new_empty(n, channels, height, width + 2 * pad)
    shifted = torch.empty_like(images)
    for offset in range(2 * pad + 1):  # one slice per offset value: far cheaper than a per-pixel gather
        chosen = torch.nonzero(offsets[0] == offset).flatten()
        rows.index_copy_(0, chosen, padded.index_select(0, chosen)[:, :, offset : offset + height])
    for offset in range(2 * pad + 1):
        chosen = torch.nonzero(offsets[1] == offset).flatten()
        shifted.index_copy_(0, chosen, rows.index_select(0, chosen)[..., offset : offset + width])
    return shifted


def _group_params(count: int, low: float, high: float, groups: torch.Tensor | None, n: int, device) -> torch.Tensor:
    """One uniform draw in [low, high] per group (or per image without groups), spread to the images."""
    import torch

    draws = torch.empty(count if groups is not None else n, device=device).uniform_(low, high)
    return draws[groups.to(device)] if groups is not None else draws


def color_jitter(images: torch.Tensor, strength: float, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Brightness, contrast, saturation and a per-channel colour cast, each factor in 1 +- `strength`
    (the cast 1 +- strength/2), on float images (N, 3, H, W) in [0, 1]. Images of one group share
    their factors: a training window sees one lighting, as a real episode does. Draws from torch's
    global generator (seeded and resumable, as `random_shift`)."""
    import torch

    if strength <= 0:
        return images
    n = images.shape[0]
    count = int(groups.max()) + 1 if groups is not None else n
    draw = lambda low, high: _group_params(count, low, high, groups, n, images.device)  # noqa: E731
    brightness, contrast, saturation = (draw(1 - strength, 1 + strength) for _ in range(3))
    cast = torch.stack([draw(1 - strength / 2, 1 + strength / 2) for _ in range(3)], 1)  # (N, 3)
    # brightness b, contrast c about the image mean m, saturation s towards grey (weights w), cast k:
    # all linear, so one 3x3 matrix and offset per image: k * (b c (s I + (1 - s) 1 w^T) x + b m (1 - c))
    grey = images.new_tensor([0.299, 0.587, 0.114])
    eye = torch.eye(3, dtype=images.dtype, device=images.device)
    s = saturation[:, None, None]
    mixing = s * eye + (1 - s) * grey.expand(3, 3)
    matrix = cast[:, :, None] * (brightness * contrast)[:, None, None] * mixing
    mean = images.mean(dim=(1, 2, 3))
    offset = cast * (brightness * mean * (1 - contrast))[:, None]
    out = torch.einsum("nij,njhw->nihw", matrix, images) + offset[..., None, None]
    return out.clamp(0.0, 1.0)


def random_rotate_crop(images: torch.Tensor, degrees: float, crop: float, groups: torch.Tensor | None = None) -> torch.Tensor:
    """A small rotation (up to +-`degrees`) and zoom-in crop (keeping 1/(1+s) of the side, s up to
    `crop`) about the image centre, borders repeated, on float images (N, C, H, W). One draw per group."""
    import math

    import torch
    import torch.nn.functional as F

    if degrees <= 0 and crop <= 0:
        return images
    n = images.shape[0]
    count = int(groups.max()) + 1 if groups is not None else n
    angle = _group_params(count, -degrees, degrees, groups, n, images.device) * (math.pi / 180.0)
    scale = 1.0 / _group_params(count, 1.0, 1.0 + crop, groups, n, images.device)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
