"""What an arm and a camera are to headway: protocols, declared features, timestamped observations.

Conventions (from lerobot's `Robot`/`Camera`, polymetis, franky, ur_rtde):
- connect / disconnect, and both are context managers whose exit disconnects (also on Ctrl-C);
- `observation_features` / `action_features` are declared before connecting;
- `get_observation()` returns values with the time they were measured (`time.monotonic()`);
- `send_action()` returns the action actually sent (after any clamping) -- record that one;
- `limits` declares, per action dimension, what the safety layer needs to keep commands safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from headway.errors import HeadwayError

# How an action dimension relates to the measured state (see `ArmLimits`).
ABSOLUTE = "absolute"  # the action is a target position of state[state_index] (joint position control)
DELTA = "delta"  # the target is measured + gain * action (Cartesian / velocity-like control)
COMMAND = "command"  # neither (e.g. a gripper open/close command): limits only
KINDS = (ABSOLUTE, DELTA, COMMAND)


class HardwareError(HeadwayError):
    """A device failed (disconnected, timed out, stale data); the controller goes to the safe state."""


class CameraError(HardwareError):
    """A camera is dead or its newest frame is too old."""


@dataclass(frozen=True)
class Frame:
    """One camera image and when it was captured (`time.monotonic()` seconds)."""

    image: np.ndarray  # HxWx3 uint8
    timestamp: float
    index: int = 0  # frames captured so far by this camera

    def age(self, now: float) -> float:
        return now - self.timestamp


@dataclass
class ArmObservation:
    """One reading of an arm and its cameras, each value with its own timestamp."""

    state: np.ndarray  # float32 proprioception (joint positions, or eef pose + fingers in simulation)
    state_time: float
    frames: dict[str, Frame] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. "object" (simulation only)

    @property
    def images(self) -> dict[str, np.ndarray]:
        return {view: frame.image for view, frame in self.frames.items()}

    def policy_observation(self) -> dict[str, Any]:
        """The observation layout of `headway.policy.interface` (plus any extras the arm provides)."""
        return {"images": self.images, "state": self.state, **self.extra}


@dataclass
class ArmLimits:
    """Per action dimension: vendor limits, how the action relates to the state, and safe rates.

    - `low`/`high`: limits of the command itself (joint limits for ABSOLUTE dims).
    - `kind`: ABSOLUTE, DELTA or COMMAND; `gain` (DELTA): target units per action unit;
      `state_index`: the state entry the dimension moves (ABSOLUTE: required; DELTA: for the workspace).
    - `target_low`/`target_high`: where the target may go (ABSOLUTE: the joint limits again; DELTA:
      the workspace box of the measured coordinate; +-inf when unbounded).
    - `max_step`: largest change of the target from the measured state in one step (target units).
    - `max_velocity`: largest target speed (target units per second).
    - `hold`: the command that keeps a COMMAND dim where it is before anything was sent.
    """

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    kind: tuple[str, ...]
    gain: np.ndarray | None = None
    state_index: tuple[int | None, ...] | None = None
    target_low: np.ndarray | None = None
    target_high: np.ndarray | None = None
    max_step: np.ndarray | None = None
    max_velocity: np.ndarray | None = None
    hold: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        self.names = tuple(self.names)
        self.kind = tuple(self.kind)

        def vector(value, default: float) -> np.ndarray:
            array = np.full(n, default, dtype=np.float64) if value is None else np.asarray(value, dtype=np.float64)
            if array.shape == ():
                array = np.full(n, float(array))
            if array.shape != (n,):
                raise HeadwayError(f"arm limits: expected {n} values (one per action name), got shape {array.shape}")
            return array

        self.low, self.high = vector(self.low, 0.0), vector(self.high, 0.0)
        self.gain = vector(self.gain, 1.0)
        self.max_step = vector(self.max_step, np.inf)
        self.max_velocity = vector(self.max_velocity, np.inf)
        self.hold = vector(self.hold, 0.0)
        self.state_index = tuple(self.state_index) if self.state_index is not None else (None,) * n
        if len(self.kind) != n or len(self.state_index) != n:
            raise HeadwayError(f"arm limits: kind and state_index need {n} entries each")
        for name, kind, index in zip(self.names, self.kind, self.state_index):
            if kind not in KINDS:
                raise HeadwayError(f"arm limits: action {name!r} has kind {kind!r}; use one of {', '.join(KINDS)}")
            if kind == ABSOLUTE and index is None:
                raise HeadwayError(f"arm limits: absolute action {name!r} needs the state index it commands")
        if not np.all(self.low < self.high):
            raise HeadwayError(f"arm limits: every low must be below its high, got {self.low} / {self.high}")
        absolute = np.array([k == ABSOLUTE for k in self.kind])
        self.target_low = np.where(absolute, self.low, vector(self.target_low, -np.inf))
        self.target_high = np.where(absolute, self.high, vector(self.target_high, np.inf))
        if np.any(self.gain[[k == DELTA for k in self.kind]] <= 0):
            raise HeadwayError("arm limits: delta gains must be positive")
        if np.any(self.max_step <= 0) or np.any(self.max_velocity <= 0):
            raise HeadwayError("arm limits: max_step and max_velocity must be positive (inf for none)")

    @property
    def dim(self) -> int:
        return len(self.names)


@runtime_checkable
class Camera(Protocol):
    """A camera read asynchronously: `read()` returns the newest frame or raises `CameraError`."""

    name: str

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    @property
    def is_connected(self) -> bool: ...

    def read(self) -> Frame:
        """The newest frame; raises `CameraError` if the device is dead or the frame is too old."""
        ...


@runtime_checkable
class Arm(Protocol):
    """A robot arm with its cameras."""

    name: str

    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        """{"state": (D,), "images.<view>": (H, W, 3), ...}; valid before connecting."""
        ...

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        """{"action": (A,)}; valid before connecting."""
        ...

    @property
    def limits(self) -> ArmLimits: ...

    @property
    def views(self) -> tuple[str, ...]: ...

    @property
    def control_period(self) -> float | None:
        """Seconds one command lasts in the arm's own clock (simulation), None for wall time."""
        ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def is_simulated(self) -> bool: ...

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_observation(self) -> ArmObservation: ...

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command the arm; returns the action actually sent."""
        ...

    # Optional: `read_state() -> np.ndarray`, the proprioception alone (no cameras), which the safety
    # layer uses to hold the arm where it is even when a camera has failed.

    def reset_episode(self, seed: int | None = None) -> None:
        """Start a new episode (simulation: reset the scene; real arm: nothing, a person resets it)."""
        ...


class ArmContext:
    """Mixin: `with arm:` connects and always disconnects (in `finally`, even on Ctrl-C)."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


def features_of(arm: Arm) -> dict[str, Any]:
    """Declared features of an arm in one dict (for logs and dataset cards)."""
    return {"observation": dict(arm.observation_features), "action": dict(arm.action_features), "views": list(arm.views)}
