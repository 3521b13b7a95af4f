"""Offscreen render settings and per-view camera geometry."""

from __future__ import annotations

import numpy as np
from robosuite.utils import camera_utils


def apply_fast_rendering(model) -> None:
    """Turn off multisampling, shadows and reflections: they dominate CPU render time."""
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0.0


def camera_intrinsics(sim, view: str, size: int) -> np.ndarray:
    """3x3 pinhole matrix (OpenCV convention, pixels) of a square `size` image."""
    return camera_utils.get_camera_intrinsic_matrix(sim, view, size, size).astype(np.float64)


def camera_extrinsics(sim, view: str) -> np.ndarray:
    """4x4 camera-to-world pose (OpenCV axes: x right, y down, z forward) at the current step."""
    return camera_utils.get_camera_extrinsic_matrix(sim, view).astype(np.float64)
