"""Camera geometry: pinhole projection, weighted DLT triangulation with robust view selection,
one view plus depth.

Conventions (OpenCV): intrinsics K is 3x3 in pixels; a pose is the 4x4 camera-to-world transform
with camera axes x right, y down, z forward. Pixel coordinates are (u, v) = (column, row).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from headway.errors import HeadwayError

NOT_VISIBLE = "not_visible"
DEGENERATE = "degenerate"
UNDERDETERMINED = "underdetermined"
OK = "ok"
MIN_RAY_ANGLE_DEG = 1.0  # rays closer to parallel than this cannot fix depth
DEFAULT_MAX_ERROR_PX = 4.0  # views whose reprojection error exceeds this are outliers


@dataclass(frozen=True)
class Camera:
    """A calibrated camera: intrinsics (3x3) and camera-to-world pose (4x4)."""

    intrinsics: np.ndarray
    pose: np.ndarray
    name: str = "camera"

    def __post_init__(self) -> None:
        K = np.asarray(self.intrinsics, dtype=np.float64)
        T = np.asarray(self.pose, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise HeadwayError(
                f"camera {self.name!r} has no valid calibration: intrinsics must be a finite 3x3 matrix with positive "
                f"focal lengths, got {K.tolist() if K.size == 9 else K.shape}; record or pass its intrinsics"
            )
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise HeadwayError(
                f"camera {self.name!r} has no valid pose: expected a finite 4x4 camera-to-world matrix, got shape {T.shape}; "
                "record its extrinsics (datasets store oracle.camera_pose.<view>)"
            )
        object.__setattr__(self, "intrinsics", K)
        object.__setattr__(self, "pose", T)

    @property
    def centre(self) -> np.ndarray:
        return self.pose[:3, 3]

    def projection_matrix(self) -> np.ndarray:
        return projection_matrix(self.intrinsics, self.pose)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return project(points, self.intrinsics, self.pose)

    def ray(self, uv: np.ndarray) -> np.ndarray:
        """Unit direction (world frame) of the ray through pixel `uv`."""
        direction = self.pose[:3, :3] @ (np.linalg.inv(self.intrinsics) @ np.array([uv[0], uv[1], 1.0]))
        return direction / np.linalg.norm(direction)


def projection_matrix(intrinsics: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """3x4 matrix P = K [R^T | -R^T t] mapping homogeneous world points to homogeneous pixels."""
    world_to_camera = np.linalg.inv(np.asarray(pose, dtype=np.float64))
    return np.asarray(intrinsics, dtype=np.float64) @ world_to_camera[:3, :]


def project(points: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> pixels (..., 2) and depth along the optical axis (...,).

    Points behind the camera (depth <= 0) get NaN pixels.
    """
    points = np.asarray(points, dtype=np.float64)
    world_to_camera = np.linalg.inv(np.asarray(pose, dtype=np.float64))
    camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    depth = camera[..., 2]
    pixels = camera @ np.asarray(intrinsics, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = pixels[..., :2] / pixels[..., 2:3]
    uv = np.where((depth > 0)[..., None], uv, np.nan)
    return uv, depth


def in_frame(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Whether pixels (..., 2) fall inside a width x height image (pixel centres at integers)."""
    uv = np.asarray(uv, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(uv).all(-1)
            & (uv[..., 0] >= -0.5)
            & (uv[..., 0] <= width - 0.5)
            & (uv[..., 1] >= -0.5)
            & (uv[..., 1] <= height - 0.5)
        )


def rescale_pixels(uv: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates (..., 2) in a frame of `from_size` (height, width) -> the same points in the frame
    resized to `to_size` (pixel centres at integers)."""
    scale = np.array([to_size[1] / from_size[1], to_size[0] / from_size[0]])
    return (np.asarray(uv, dtype=np.float64) + 0.5) * scale - 0.5


def backproject(uv: np.ndarray, depth: float, camera: Camera) -> np.ndarray:
    """The world point at pixel `uv` and optical-axis `depth` (metres) of `camera`."""
    ray_camera = np.linalg.inv(camera.intrinsics) @ np.array([uv[0], uv[1], 1.0])
    return camera.pose[:3, :3] @ (ray_camera * depth) + camera.pose[:3, 3]


@dataclass
class Triangulation:
    """Result of lifting one keypoint to 3D.

    status: "ok", "not_visible" (no view saw the point: no point is made up), "underdetermined"
    (one view and no depth), or "degenerate" (the rays are parallel). `point` is None unless ok.
    `reprojection_error` has one entry per input view (NaN where the view did not see the point);
    `views` lists the indices of the views that agreed and were used.
    """

    status: str
    point: np.ndarray | None
    reprojection_error: np.ndarray
    views: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def mean_error(self) -> float:
        errors = self.reprojection_error[self.views] if self.views else np.array([np.nan])
        return float(np.mean(errors))


def dlt(uv: np.ndarray, cameras: list[Camera], weights: np.ndarray | None = None) -> np.ndarray:
    """Linear triangulation (DLT) of one point seen at `uv` (V, 2) by `cameras`, rows weighted by `weights`.

    Each view gives two rows u P3 - P1 and v P3 - P2; rows are normalised so that every view's
    weight, not its distance or focal length, sets its influence. Needs at least two views.
    """
    uv = np.asarray(uv, dtype=np.float64)
    weights = np.ones(len(cameras)) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = []
    for (u, v), camera, weight in zip(uv, cameras, weights):
        P = camera.projection_matrix()
        for row in (u * P[2] - P[0], v * P[2] - P[1]):
            rows.append(weight * row / max(np.linalg.norm(row[:3]), 1e-12))
    _, _, vt = np.linalg.svd(np.stack(rows))
    X = vt[-1]
    if abs(X[3]) < 1e-12:
        return np.full(3, np.nan)
    return X[:3] / X[3]


def reprojection_errors(point: np.ndarray, uv: np.ndarray, cameras: list[Camera]) -> np.ndarray:
    """Pixel distance between `uv` (V, 2) and the projection of `point` in each camera (inf if behind)."""
    errors = np.empty(len(cameras))
    for i, camera in enumerate(cameras):
        projected, depth = camera.project(point)
        errors[i] = np.linalg.norm(projected - uv[i]) if depth > 0 else np.inf
    return errors


def max_ray_angle(uv: np.ndarray, cameras: list[Camera]) -> float:
    """Largest angle (degrees) between any two viewing rays: near 0 means parallel rays, no depth."""
    rays = [c.ray(p) for p, c in zip(uv, cameras)]
    best = 0.0
    for a, b in itertools.combinations(rays, 2):
        best = max(best, float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0)))))
    return best


def _refine(point: np.ndarray, uv: np.ndarray, cameras: list[Camera], weights: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Gauss-Newton on the weighted reprojection error (numerical Jacobian), from the DLT point."""
    x = point.copy()
    sqrt_w = np.sqrt(np.repeat(weights, 2))

    def residual(p: np.ndarray) -> np.ndarray:
        return np.concatenate([c.project(p)[0] - q for q, c in zip(uv, cameras)]) * sqrt_w

    for _ in range(iterations):
        r = residual(x)
        if not np.all(np.isfinite(r)):
            return point
        J = np.empty((r.size, 3))
        for k in range(3):
            step = np.zeros(3)
            step[k] = 1e-6
            J[:, k] = (residual(x + step) - r) / 1e-6
        delta, *_ = np.linalg.lstsq(J, -r, rcond=None)
        x = x + delta
        if np.linalg.norm(delta) < 1e-9:
            break
    return x


def triangulate(
    uv: np.ndarray,
    cameras: list[Camera],
    confidence: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    min_confidence: float = 0.5,
    max_error_px: float = DEFAULT_MAX_ERROR_PX,
) -> Triangulation:
    """Lift one keypoint to 3D from its pixels in several views.

    uv: (V, 2) pixels (NaN where a view has no detection); confidence: (V,) in [0, 1] (views under
    `min_confidence` count as not seeing the point); depth: (V,) optical-axis depth in metres, NaN
    where unknown, used when only one view sees the point.

    Views seen: 0 -> not visible. 1 -> back-projected with its depth, else underdetermined. 2 or
    more -> confidence-weighted DLT over the largest set of views that agree within `max_error_px`
    (every pair is tried as a seed, then views are added that agree with it; ties go to the lower
    error), refined by Gauss-Newton; views off by more than `max_error_px` are dropped.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    n = len(cameras)
    if uv.shape[0] != n:
        raise HeadwayError(f"triangulate: {uv.shape[0]} pixel positions for {n} cameras; give one per camera")
    confidence = np.ones(n) if confidence is None else np.asarray(confidence, dtype=np.float64).reshape(n)
    errors = np.full(n, np.nan)
    seen = [i for i in range(n) if np.all(np.isfinite(uv[i])) and np.isfinite(confidence[i]) and confidence[i] >= min_confidence]
    if not seen:
        return Triangulation(NOT_VISIBLE, None, errors, [])
    if len(seen) == 1:
        i = seen[0]
        if depth is not None and np.isfinite(depth[i]) and depth[i] > 0:
            point = backproject(uv[i], float(depth[i]), cameras[i])
            errors[i] = 0.0
            return Triangulation(OK, point, errors, [i])
        return Triangulation(UNDERDETERMINED, None, errors, [i])
    if max_ray_angle(uv[seen], [cameras[i] for i in seen]) < MIN_RAY_ANGLE_DEG:
        return Triangulation(DEGENERATE, None, errors, seen)

    best: tuple[int, float, list[int], np.ndarray] | None = None
    for a, b in itertools.combinations(seen, 2):
        pair = [a, b]
        if max_ray_angle(uv[pair], [cameras[i] for i in pair]) < MIN_RAY_ANGLE_DEG:
            continue
        seed = dlt(uv[pair], [cameras[i] for i in pair], confidence[pair])
        if not np.all(np.isfinite(seed)):
            continue
        seed_errors = reprojection_errors(seed, uv, cameras)
        members = [i for i in seen if seed_errors[i] <= max_error_px]
        if not members or len(members) < 2:
            continue
        point = dlt(uv[members], [cameras[i] for i in members], confidence[members])
        if not np.all(np.isfinite(point)):
            continue
        member_errors = reprojection_errors(point, uv, cameras)[members]
        score = float(np.sum(confidence[members] * member_errors) / np.sum(confidence[members]))
        if best is None or len(members) > best[0] or (len(members) == best[0] and score < best[1]):
            best = (len(members), score, members, point)
    if best is None:
        # no two views agree: fall back on the most confident pair that is not degenerate, flagged by its error
        pairs = [p for p in itertools.combinations(seen, 2) if max_ray_angle(uv[list(p)], [cameras[i] for i in p]) >= MIN_RAY_ANGLE_DEG]
        if not pairs:
            return Triangulation(DEGENERATE, None, errors, seen)
        members = list(max(pairs, key=lambda p: confidence[list(p)].sum()))
        point = dlt(uv[members], [cameras[i] for i in members], confidence[members])
        if not np.all(np.isfinite(point)):
            return Triangulation(DEGENERATE, None, errors, seen)
    else:
        members, point = best[2], best[3]
    point = _refine(point, uv[members], [cameras[i] for i in members], confidence[members])
    all_errors = reprojection_errors(point, uv, cameras)
    errors[seen] = all_errors[seen]
    return Triangulation(OK, point, errors, sorted(members))
