"""Projection and triangulation against known synthetic cameras."""

from __future__ import annotations

import numpy as np
import pytest

from headway.errors import HeadwayError
from headway.geometry import Camera, in_frame, project, triangulate

K = np.array([[100.0, 0.0, 42.0], [0.0, 100.0, 42.0], [0.0, 0.0, 1.0]])


def look_at(eye, target=(0.0, 0.0, 0.8), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose (OpenCV axes) at `eye` looking at `target`."""
    eye, target, up = (np.asarray(x, dtype=float) for x in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = eye
    return pose


CAMERAS = [
    Camera(K, look_at((1.0, 0.0, 1.5)), "front"),
    Camera(K, look_at((0.0, 1.2, 1.4)), "side"),
    Camera(K, look_at((-0.8, -0.8, 1.6)), "back"),
]
POINT = np.array([0.05, -0.03, 0.85])


def pixels(point=POINT, cameras=CAMERAS) -> np.ndarray:
    return np.stack([c.project(point)[0] for c in cameras])


def test_projection_of_the_look_at_target_is_the_principal_point():
    uv, depth = project(np.array([0.0, 0.0, 0.8]), K, look_at((1.0, 0.0, 1.5)))
    np.testing.assert_allclose(uv, [42.0, 42.0], atol=1e-9)
    assert depth == pytest.approx(np.hypot(1.0, 0.7))
    behind, _ = project(np.array([2.0, 0.0, 2.2]), K, look_at((1.0, 0.0, 1.5)))
    assert np.all(np.isnan(behind))
    assert list(in_frame(np.array([[0.0, 0.0], [83.4, 10], [84.0, 3], [np.nan, 1]]), 84, 84)) == [True, True, False, False]


@pytest.mark.parametrize("views", [[0, 1], [0, 1, 2]])
def test_triangulation_is_exact_without_noise(views):
    cameras = [CAMERAS[i] for i in views]
    result = triangulate(pixels(cameras=cameras), cameras)
    assert result.ok and result.views == list(range(len(views)))
    np.testing.assert_allclose(result.point, POINT, atol=1e-7)
    assert np.nanmax(result.reprojection_error) < 1e-5


def test_more_views_average_out_pixel_noise():
    rng = np.random.default_rng(0)
    two, three = [], []
    for _ in range(200):
        noisy = pixels() + rng.normal(0, 0.5, (3, 2))
        two.append(np.linalg.norm(triangulate(noisy[:2], CAMERAS[:2]).point - POINT))
        three.append(np.linalg.norm(triangulate(noisy, CAMERAS).point - POINT))
    assert np.median(two) < 0.012  # half a pixel at f=100 px and ~1.3 m is ~6 mm per view
    assert np.median(three) < np.median(two)


def test_an_outlier_view_is_dropped():
    uv = pixels()
    uv[2] += [15.0, -12.0]  # the third view detected something else
    result = triangulate(uv, CAMERAS)
    assert result.ok and result.views == [0, 1]
    np.testing.assert_allclose(result.point, POINT, atol=1e-6)
    assert result.reprojection_error[2] > 10


def test_low_confidence_views_do_not_count():
    uv = pixels()
    uv[1] += 30.0
    result = triangulate(uv, CAMERAS, confidence=np.array([0.9, 0.1, 0.8]))
    assert result.ok and result.views == [0, 2]
    np.testing.assert_allclose(result.point, POINT, atol=1e-6)
    assert np.isnan(result.reprojection_error[1])


def test_one_view_with_depth_and_without():
    camera = CAMERAS[1]
    uv, depth = camera.project(POINT)
    result = triangulate(uv[None], [camera], depth=np.array([depth]))
    assert result.ok
    np.testing.assert_allclose(result.point, POINT, atol=1e-9)
    alone = triangulate(uv[None], [camera])
    assert alone.status == "underdetermined" and alone.point is None


def test_invisible_everywhere_is_not_visible_never_a_point():
    uv = np.full((3, 2), np.nan)
    result = triangulate(uv, CAMERAS)
    assert result.status == "not_visible" and result.point is None and result.views == []
    result = triangulate(pixels(), CAMERAS, confidence=np.zeros(3))
    assert result.status == "not_visible" and result.point is None


def test_parallel_rays_are_degenerate():
    pose = look_at((1.0, 0.0, 1.5))
    shifted = pose.copy()
    shifted[:3, 3] += pose[:3, 2] * 0.3  # same ray, further along the optical axis
    cameras = [Camera(K, pose), Camera(K, shifted)]
    target = np.array([0.0, 0.0, 0.8])
    uv = np.stack([c.project(target)[0] for c in cameras])
    result = triangulate(uv, cameras)
    assert result.status == "degenerate" and result.point is None


def test_uncalibrated_camera_is_named():
    with pytest.raises(HeadwayError, match="sideview.*intrinsics"):
        Camera(np.zeros((3, 3)), np.eye(4), "sideview")
    with pytest.raises(HeadwayError, match="wrist.*pose"):
        Camera(K, np.eye(3), "wrist")
