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
