"""The lerobot adapter against lerobot's real SO-100 follower code, with a fake motor bus and a fake camera registered for the test."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
from lerobot.cameras.configs import CameraConfig

from headway.errors import HeadwayError
from headway.hardware.lerobot_adapter import LeRobotArm, robot_types
from headway.hardware.protocols import ABSOLUTE, CameraError
from headway.hardware.safety import SafetyConfig, SafetyLayer


class FakeFeetechBus:
    """Stands in for lerobot's FeetechMotorsBus: positions move halfway to each goal; every goal is logged."""

    instances: list[FakeFeetechBus] = []

    def __init__(self, port, motors, calibration=None, **kwargs) -> None:
        self.port, self.motors, self.calibration = port, motors, calibration
        self.is_connected = False
        self.position = {m: 0.0 for m in motors}
        self.goals: list[dict[str, float]] = []
        self.torque_off_on_disconnect = None
        FakeFeetechBus.instances.append(self)

    is_calibrated = True

    def connect(self, handshake: bool = True) -> None:
        self.is_connected = True

    def disconnect(self, disable_torque: bool = True) -> None:
        self.is_connected = False
        self.torque_off_on_disconnect = disable_torque

    @contextmanager
    def torque_disabled(self, motors=None):
        yield

    def configure_motors(self, *args, **kwargs) -> None: ...

    def write(self, *args, **kwargs) -> None: ...

    def write_calibration(self, *args, **kwargs) -> None: ...

    def sync_read(self, register, motors=None, **kwargs):
        assert register == "Present_Position" and self.is_connected
        return dict(self.position)

    def sync_write(self, register, values, **kwargs) -> None:
        assert register == "Goal_Position" and self.is_connected
        self.goals.append(dict(values))
        for motor, goal in values.items():
            self.position[motor] += 0.5 * (goal - self.position[motor])


@CameraConfig.register_subclass("headway_test_fake")
@dataclass
class HeadwayTestFakeCameraConfig(CameraConfig):
    die_after: int | None = None


class HeadwayTestFakeCamera:
    """A lerobot-style camera (connect / async_read / disconnect) producing numbered frames."""

    def __init__(self, config: HeadwayTestFakeCameraConfig) -> None:
        self.config = config
        self.width, self.height, self.fps = config.width, config.height, config.fps  # as lerobot's Camera base
        self.is_connected = False
        self.frames = 0

    def connect(self, warmup: bool = True) -> None:
        self.is_connected = True

    def async_read(self, timeout_ms: float = 200) -> np.ndarray:
        time.sleep(1.0 / self.config.fps)
        self.frames += 1
        if self.config.die_after is not None and self.frames > self.config.die_after:
            raise ConnectionError("USB camera unplugged")
        return np.full((self.config.height, self.config.width, 3), self.frames % 255, np.uint8)

    def disconnect(self) -> None:
        self.is_connected = False


@pytest.fixture
def fake_bus(monkeypatch):
    import lerobot.robots.so_follower.so_follower as so_follower

    FakeFeetechBus.instances.clear()
    monkeypatch.setattr(so_follower, "FeetechMotorsBus", FakeFeetechBus)
    return FakeFeetechBus


def write_config(tmp_path, die_after=None, **headway) -> str:
    config = {
        "port": "/dev/fake",
        "id": "test_arm",
        "calibration_dir": str(tmp_path / "calibration"),
        "cameras": {"front": {"type": "headway_test_fake", "width": 40, "height": 30, "fps": 100, "die_after": die_after}},
        "headway": {"views": {"front": "agentview"}, "joint_limits": {"shoulder_pan": [-90, 90]}, "max_step": 5.0, **headway},
    }
    path = tmp_path / "robot.json"
    path.write_text(json.dumps(config))
    return path


def test_lerobot_robot_types_are_found_by_name():
    assert {"so100_follower", "so101_follower", "koch_follower"} <= set(robot_types())


def test_so100_through_the_adapter_and_the_safety_layer(tmp_path, fake_bus):
    arm = LeRobotArm.from_config_file("so100_follower", write_config(tmp_path))
    assert arm.views == ("agentview",) and arm.observation_features["images.agentview"] == (30, 40, 3)
    assert arm.limits.names[0] == "shoulder_pan.pos" and set(arm.limits.kind) == {ABSOLUTE}
    assert arm.limits.low[0] == -90 and arm.limits.high[-1] == 100  # gripper: lerobot's 0..100 range
    safety = SafetyLayer(arm, SafetyConfig(margin=0.05, watchdog_timeout=None))
    with safety:
        bus = fake_bus.instances[-1]
        first = safety.get_observation()
        assert first.state.shape == (6,) and first.frames["agentview"].image.shape == (30, 40, 3)
        time.sleep(0.05)
        second = safety.get_observation()
        assert second.frames["agentview"].index > first.frames["agentview"].index  # read asynchronously
        for target in ([500.0, 0, 0, 0, 0, 0], [np.nan] * 6, [1e9, -1e9, 3, 4, 5, 6], [0.0] * 3):
            measured = safety.get_observation().state
            sent = safety.send_action(target)
            goal = bus.goals[-1]
            np.testing.assert_allclose([goal[m] for m in bus.motors], sent, atol=1e-4)  # what we report is what the bus got
            assert np.all(np.abs(sent - measured) <= 5.0 + 1e-4)
            assert -90 * 0.9 - 1e-4 <= sent[0] <= 90 * 0.9 + 1e-4
        assert safety.counts["non_finite"] == 1 and safety.counts["shape"] == 1 and safety.counts["step"] >= 2
    assert not bus.is_connected and bus.torque_off_on_disconnect is True  # lerobot disables torque on disconnect


def test_a_dead_lerobot_camera_is_reported(tmp_path, fake_bus):
    arm = LeRobotArm.from_config_file("so100_follower", write_config(tmp_path, die_after=3))
    with arm:
        time.sleep(0.1)
        with pytest.raises(CameraError, match="unplugged"):
            arm.get_observation()
        np.testing.assert_array_equal(arm.read_state(), np.zeros(6))  # the joints can still be read to hold


def test_bad_robot_configs_are_clear_errors(tmp_path, fake_bus):
    with pytest.raises(HeadwayError, match="unknown lerobot robot type 'no_such_arm'.*so100_follower"):
        LeRobotArm.from_config_file("no_such_arm", write_config(tmp_path))
    with pytest.raises(HeadwayError, match="needs --robot-config"):
        LeRobotArm.from_config_file("so100_follower", None)
    with pytest.raises(HeadwayError, match="headway.views names camera 'side'"):
        LeRobotArm.from_config_file("so100_follower", write_config(tmp_path, views={"side": "agentview"}))
    with pytest.raises(HeadwayError, match="unknown headway settings"):
        LeRobotArm.from_config_file("so100_follower", write_config(tmp_path, speed=3))
