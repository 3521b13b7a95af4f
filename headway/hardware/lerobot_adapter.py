"""Any lerobot `Robot` (SO-100/101, Koch, OMX, OpenArm, ...) as a headway `Arm`, by its registered type name.

The robot is built from a JSON config file through lerobot's own registry (`RobotConfig`'s draccus
choice registry, `make_robot_from_config`), e.g. `robot.json` for `--robot lerobot:so100_follower`:

    {
      "port": "/dev/ttyACM0", "id": "my_arm",
      "cameras": {"front": {"type": "opencv", "index_or_path": 0, "width": 640, "height": 480, "fps": 30},
                  "wrist": {"type": "opencv", "index_or_path": 2, "width": 640, "height": 480, "fps": 30}},
      "headway": {
        "views": {"front": "agentview", "wrist": "robot0_eye_in_hand"},
        "joint_limits": {"shoulder_pan": [-90, 90], "gripper": [0, 60]},
        "max_step": 4.0, "max_velocity": 60.0,
        "instruction": "pick up the red cube and lift it"
      }
    }

Everything outside "headway" is the lerobot robot config. "headway.views" names each lerobot camera
after the view the reward model and policy were trained on. The state is the robot's scalar
observations (joint positions first, in action order); actions are absolute joint targets.
Joint limits default to the calibrated range of each motor (or the range of its normalisation
mode); `max_step` (per step) and `max_velocity` (per second) default to 5% and 50% of each range.

Cameras are taken out of the lerobot robot and read by headway's `ThreadedCamera` (newest frame,
capture timestamps, stale and dead detection) through each lerobot `Camera`'s `async_read`.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headway.errors import HeadwayError, unknown_name
from headway.hardware.cameras import ThreadedCamera
from headway.hardware.protocols import ABSOLUTE, COMMAND, ArmContext, ArmLimits, ArmObservation, HardwareError

log = logging.getLogger(__name__)

ROBOT_MODULES = (
    "so_follower",
    "koch_follower",
    "omx_follower",
    "openarm_follower",
    "bi_so_follower",
    "bi_openarm_follower",
    "hope_jr",
    "lekiwi",
    "reachy2",
    "earthrover_mini_plus",
    "unitree_g1",
)
CAMERA_MODULES = (
    "lerobot.cameras.opencv.configuration_opencv",
    "lerobot.cameras.realsense.configuration_realsense",
    "lerobot.cameras.reachy2_camera.configuration_reachy2_camera",
    "lerobot.cameras.zmq.configuration_zmq",
)


def register_lerobot_devices() -> None:
    """Import lerobot's robot and camera modules so their configs register by type name (and plugins)."""
    for name in ROBOT_MODULES:
        try:
            importlib.import_module(f"lerobot.robots.{name}")
        except Exception as error:  # noqa: BLE001 - optional SDKs missing: that robot type is unavailable
            log.debug("lerobot robot module %s unavailable: %s", name, error)
    for name in CAMERA_MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001
            log.debug("lerobot camera module %s unavailable: %s", name, error)
    try:
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()
    except Exception as error:  # noqa: BLE001
        log.debug("lerobot plugins not registered: %s", error)


def robot_types() -> list[str]:
    from lerobot.robots import RobotConfig

    register_lerobot_devices()
    return sorted(RobotConfig.get_known_choices())


def make_robot_config(robot_type: str, data: dict[str, Any]):
    """A lerobot `RobotConfig` of the registered `robot_type` from plain data (draccus decoding)."""
    import draccus
    from lerobot.robots import RobotConfig

    register_lerobot_devices()
    known = RobotConfig.get_known_choices()
    if robot_type not in known:
        raise unknown_name("lerobot robot type", robot_type, list(known))
    config_class = RobotConfig.get_choice_class(robot_type)
    data = {k: v for k, v in data.items() if k != "type"}
    try:
        return draccus.decode(config_class, data)
    except Exception as error:  # noqa: BLE001 - draccus raises many kinds
        raise HeadwayError(f"robot config for {robot_type!r} is invalid: {error}; see {config_class.__module__}.{config_class.__name__}") from None


@dataclass
class HeadwaySettings:
    """The "headway" section of a robot config file."""

    views: dict[str, str] = field(default_factory=dict)  # lerobot camera key -> headway view name
    joint_limits: dict[str, list[float]] = field(default_factory=dict)
    max_step: float | dict[str, float] | None = None
    max_velocity: float | dict[str, float] | None = None
    instruction: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadwaySettings:
        unknown = set(data) - {"views", "joint_limits", "max_step", "max_velocity", "instruction"}
        if unknown:
            raise HeadwayError(f"robot config: unknown headway settings {sorted(unknown)}; valid: views, joint_limits, max_step, max_velocity, instruction")
        return cls(**data)


class LeRobotArm(ArmContext):
    """A lerobot `Robot` behind the `Arm` protocol (absolute joint-position actions)."""

    is_simulated = False
    control_period = None

    def __init__(self, robot, settings: HeadwaySettings | None = None, camera_max_age: float = 0.5) -> None:
        self.robot = robot
        self.settings = settings or HeadwaySettings()
        self.name = f"lerobot:{getattr(robot, 'name', type(robot).__name__)}"
        self.instruction = self.settings.instruction
        lerobot_cameras = dict(getattr(robot, "cameras", {}) or {})
        camera_shapes = {key: robot.observation_features.get(key) for key in lerobot_cameras}
        if lerobot_cameras:
            robot.cameras = {}  # headway reads them: newest frame with timestamps, stale/dead detection
        for key in self.settings.views:
            if key not in lerobot_cameras:
                raise HeadwayError(f"robot config: headway.views names camera {key!r}, but the robot has {sorted(lerobot_cameras) or 'no cameras'}")
        self._view_of = {key: self.settings.views.get(key, key) for key in lerobot_cameras}
        self._camera_shapes = {self._view_of[k]: tuple(s) for k, s in camera_shapes.items() if s is not None}
        self.cameras = {
            self._view_of[key]: ThreadedCamera(
                self._view_of[key],
                grab=camera.async_read,
                max_age=camera_max_age,
                open_device=camera.connect,
                close_device=camera.disconnect,
            )
            for key, camera in lerobot_cameras.items()
        }
        self.action_keys = [k for k, t in robot.action_features.items() if t is float]
        if not self.action_keys:
            raise HeadwayError(f"{self.name}: no scalar action features; headway drives joint-position robots")
        scalar_obs = [k for k, t in robot.observation_features.items() if t is float]
        self.state_keys = [k for k in self.action_keys if k in scalar_obs] + [k for k in scalar_obs if k not in self.action_keys]
        self.state_names = list(self.state_keys)
        self._limits = self._build_limits()
        self._connected = False

    @classmethod
    def from_config_file(cls, robot_type: str, path: Path | str | None, camera_max_age: float = 0.5) -> LeRobotArm:
        """Build the robot `robot_type` from a JSON config file (see the module docstring)."""
        from lerobot.robots import make_robot_from_config

        if path is None:
            raise HeadwayError(f"--robot lerobot:{robot_type} needs --robot-config FILE (JSON: port, cameras, headway views and limits)")
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HeadwayError(f"robot config {path} does not exist") from None
        except json.JSONDecodeError as error:
            raise HeadwayError(f"robot config {path} is not valid JSON: {error}") from None
        settings = HeadwaySettings.from_dict(data.pop("headway", {}) or {})
        config = make_robot_config(robot_type, data)
        return cls(make_robot_from_config(config), settings, camera_max_age)

    # -- features --------------------------------------------------------------------------------------
    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        return {"state": (len(self.state_keys),), **{f"images.{v}": s for v, s in self._camera_shapes.items()}}

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        return {"action": (len(self.action_keys),)}

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.cameras)

    @property
    def limits(self) -> ArmLimits:
        return self._limits

    def _default_range(self, key: str) -> tuple[float, float]:
        motor = key.removesuffix(".pos")
        bus = getattr(self.robot, "bus", None)
        motors = getattr(bus, "motors", {}) or {}
        if motor in motors:
            mode = str(getattr(motors[motor].norm_mode, "value", motors[motor].norm_mode)).lower()
            if "0_100" in mode:
                return 0.0, 100.0
            if "m100_100" in mode:
                return -100.0, 100.0
            calibration = getattr(self.robot, "calibration", {}) or {}
            if "degree" in mode and motor in calibration:
                c = calibration[motor]
                half = (c.range_max - c.range_min) / 2 * 360.0 / 4095
                return -half, half
            if "degree" in mode:
                return -180.0, 180.0
        raise HeadwayError(
            f"robot config: no joint limits known for {motor!r}; add headway.joint_limits.{motor}: [low, high] in the robot's units"
        )

    def _build_limits(self) -> ArmLimits:
        lows, highs = [], []
        for key in self.action_keys:
            motor = key.removesuffix(".pos")
            given = self.settings.joint_limits.get(motor) or self.settings.joint_limits.get(key)
            low, high = (float(given[0]), float(given[1])) if given else self._default_range(key)
            lows.append(low)
            highs.append(high)
        span = np.array(highs) - np.array(lows)

        def per_motor(value, default: np.ndarray) -> np.ndarray:
            if value is None:
                return default
            if isinstance(value, dict):
                return np.array([float(value.get(k.removesuffix(".pos"), value.get(k, d))) for k, d in zip(self.action_keys, default)])
            return np.full(len(self.action_keys), float(value))

        kind = tuple(ABSOLUTE if k in self.state_keys else COMMAND for k in self.action_keys)
        return ArmLimits(
            names=tuple(self.action_keys),
            low=lows,
            high=highs,
            kind=kind,
            state_index=tuple(self.state_keys.index(k) if k in self.state_keys else None for k in self.action_keys),
            max_step=per_motor(self.settings.max_step, 0.05 * span),
            max_velocity=per_motor(self.settings.max_velocity, 0.5 * span),
        )

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._connected:
            return
        self.robot.connect()
        started = []
        try:
            for camera in self.cameras.values():
                camera.connect()
                started.append(camera)
        except BaseException:
            for camera in started:
                camera.disconnect()
            self.robot.disconnect()
            raise
        self._connected = True

    def disconnect(self) -> None:
        """Stop the cameras and disconnect the robot (lerobot disables torque if its config says so)."""
        self._connected = False
        for camera in self.cameras.values():
            camera.disconnect()
        if getattr(self.robot, "is_connected", False):
            self.robot.disconnect()

    def reset_episode(self, seed: int | None = None) -> None:
        """A person resets a real scene; the controller prompts for it."""

    # -- I/O --------------------------------------------------------------------------------------------
    def get_observation(self) -> ArmObservation:
        import time

        try:
            raw = self.robot.get_observation()
        except Exception as error:  # noqa: BLE001 - bus errors, timeouts
            raise HardwareError(f"{self.name}: reading the robot failed: {error}") from error
        stamp = time.monotonic()
        state = np.array([float(raw[k]) for k in self.state_keys], dtype=np.float32)
        frames = {view: camera.read() for view, camera in self.cameras.items()}
        return ArmObservation(state=state, state_time=stamp, frames=frames)

    def read_state(self) -> np.ndarray:
        """Joint positions alone (cameras are not read), for holding the arm when a camera fails."""
        try:
            raw = self.robot.get_observation()
        except Exception as error:  # noqa: BLE001
            raise HardwareError(f"{self.name}: reading the robot failed: {error}") from error
        return np.array([float(raw[k]) for k in self.state_keys], dtype=np.float32)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        command = {key: float(value) for key, value in zip(self.action_keys, action)}
        try:
            sent = self.robot.send_action(command)
        except Exception as error:  # noqa: BLE001
            raise HardwareError(f"{self.name}: sending the action failed: {error}") from error
        return np.array([float(sent.get(k, command[k])) for k in self.action_keys], dtype=np.float32)
