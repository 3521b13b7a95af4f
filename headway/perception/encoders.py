"""Per-view frame encoders, registered by name: a small conv net trained from scratch, or a frozen
Hugging Face vision tower.

Every encoder maps a batch of RGB frames (N, 3, H, W), float in [0, 1], to features (N, D).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from headway.registry import Registry


class FrameEncoder(nn.Module):
    """Base class: `output_dim` features per frame; `trainable` says whether it learns with the model."""

    output_dim: int
    trainable: bool = True

    @abstractmethod
    def spec(self) -> str:
        """A string that names this encoder and its settings (checkpoints and feature caches key on it)."""

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D)."""


ENCODERS: Registry[Callable[..., FrameEncoder]] = Registry("encoder")


def build_encoder(spec: str, **kwargs) -> FrameEncoder:
    """`conv` or `hf:<hub id or local path>` -> an encoder instance."""
    # cycle: the encoder modules import ENCODERS and FrameEncoder from this one to register themselves
    import headway.perception.conv_encoder  # noqa: F401  (registers "conv")

    name, _, argument = spec.partition(":")
    if name == "hf":
        import headway.perception.hf_encoder  # noqa: F401  (registers "hf")

        return ENCODERS.get("hf")(argument, **kwargs)
    return ENCODERS.get(name)(**kwargs)
