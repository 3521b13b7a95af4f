"""Image preprocessing shared by training, evaluation and labelling (opencv)."""

from __future__ import annotations

import numpy as np


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) with area interpolation; unchanged if already that size."""
    import cv2

    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
