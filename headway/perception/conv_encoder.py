"""A small convolutional frame encoder trained from scratch: fast on a CPU, no download."""

from __future__ import annotations

import torch
from torch import nn

from headway.perception.encoders import ENCODERS, FrameEncoder


class ConvEncoder(FrameEncoder):
    """A 4x4 patchify stem, two strided conv blocks, pooled to a 3x3 grid and projected.

    About 2 M multiply-adds per 84x84 frame: fast enough to score thousands of frames a second on a CPU.
    """

    trainable = True

    def __init__(self, output_dim: int = 128, width: int = 16) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.width = width
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=4),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.GroupNorm(4, 2 * width),
            nn.GELU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.GroupNorm(4, 4 * width),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(3),
        )
        self.head = nn.Linear(4 * width * 9, output_dim)

    def spec(self) -> str:
        return f"conv(width={self.width},dim={self.output_dim})"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images * 2.0 - 1.0).flatten(1))


ENCODERS.register("conv", ConvEncoder)
