"""Fakes for the hardware tests (no tests here): a joint-position arm with cameras, scripted policies and reward models."""

from __future__ import annotations

import numpy as np
import torch

from headway.hardware.cameras import StaticCamera
from headway.hardware.protocols import ABSOLUTE, COMMAND, ArmContext, ArmLimits, ArmObservation
from headway.reward.interface import RewardOutput
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel

VIEWS = ("agentview", "robot0_eye_in_hand")
SIZE = 32
STAGES = ("reach the cube", "grasp the cube", "lift the cube")


def fake_limits() -> ArmLimits:
    """Three joints with different ranges and a gripper command."""
    return ArmLimits(
        names=("j0", "j1", "j2", "gripper"),
        low=[-2.0, -1.0, -0.5, 0.0],
        high=[2.0, 1.0, 0.5, 1.0],
        kind=(ABSOLUTE, ABSOLUTE, ABSOLUTE, COMMAND),
        state_index=(0, 1, 2, None),
        max_step=[0.1, 0.1, 0.05, np.inf],
        max_velocity=[1.0, 1.0, 0.6, np.inf],
        hold=[0, 0, 0, 0.0],
    )


class FakeArm(ArmContext):
    """Joint-position arm: each command moves the joints halfway to the target; cameras get a new frame per command.

    Records every command it receives with the state measured when it arrived.
    """

    name = "fake"
    is_simulated = False
    control_period = None

    def __init__(self, views=VIEWS, size: int = SIZE, lag: float = 0.5) -> None:
        self._limits = fake_limits()
        self.lag = lag
        self.size = size
        self.cameras = {v: StaticCamera(v, max_age=0.5) for v in views}
        self.state = np.zeros(4, dtype=np.float64)  # 3 joints + gripper opening
        self.received: list[tuple[np.ndarray, np.ndarray]] = []
        self.connected = False
        self.connects = self.disconnects = self.resets = 0
        self.steps = 0

    views = property(lambda self: tuple(self.cameras))
    limits = property(lambda self: self._limits)
    observation_features = property(lambda self: {"state": (4,), **{f"images.{v}": (self.size, self.size, 3) for v in self.cameras}})
    action_features = property(lambda self: {"action": (4,)})
    is_connected = property(lambda self: self.connected)

    def connect(self) -> None:
        self.connected = True
        self.connects += 1
        for camera in self.cameras.values():
            camera.connect()
        self._render()

    def disconnect(self) -> None:
        self.connected = False
        self.disconnects += 1
        for camera in self.cameras.values():
            camera.disconnect()

    def reset_episode(self, seed=None) -> None:
        self.resets += 1
        self.state[:] = 0.0
        self.steps = 0
        self._render()

    def _render(self) -> None:
        for i, camera in enumerate(self.cameras.values()):
            value = int(np.clip(40 + 60 * self.state[0] + 20 * i + self.steps, 0, 255))
            camera.put(np.full((self.size, self.size, 3), value, dtype=np.uint8))

    def get_observation(self) -> ArmObservation:
        assert self.connected, "read while disconnected"
        for camera in self.cameras.values():  # a live stream: the newest frame is current (unless the camera hangs)
            camera.touch()
        frames = {v: c.read() for v, c in self.cameras.items()}
        return ArmObservation(self.state.astype(np.float32), 0.0, frames)

    def read_state(self) -> np.ndarray:
        return self.state.astype(np.float32)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        assert self.connected, "command while disconnected"
        action = np.asarray(action, dtype=np.float64)
        self.received.append((action.copy(), self.state.copy()))
        self.state[:3] += self.lag * (action[:3] - self.state[:3])
        self.state[3] = action[3]
        self.steps += 1
        self._render()
        return action.astype(np.float32)


class FakePolicy:
    """Drives joint 0 toward 1.5 (beyond what the safety layer allows per step); optional faults at a step."""

    task, views, state_dim, action_dim = "lift", (), 4, 4

    def __init__(self, fault_step: int | None = None, fault=None, on_episode: int = 0) -> None:
        self.fault_step, self.fault, self.on_episode = fault_step, fault, on_episode
        self.t = 0
        self.episode = -1

    def reset(self) -> None:
        self.t = 0
        self.episode += 1

    def act(self, observation) -> np.ndarray:
        assert set(observation["images"]) == set(VIEWS) and observation["state"].shape == (4,)
        self.t += 1
        if self.fault_step is not None and self.t == self.fault_step and self.episode == self.on_episode:
            self.fault()
        return np.array([1.5, 0.3, -0.2, 1.0], dtype=np.float32)

    def save(self, path) -> None: ...


class ScriptedRewardModel:
    """Success probability jumps to 0.9 from `success_at` (None: never); progress rises linearly until `stall_at`."""

    views, stage_names, image_size = VIEWS, STAGES, SIZE

    def __init__(self, success_at: int | None = None, stall_at: int | None = None, fault_step: int | None = None) -> None:
        self.success_at, self.stall_at, self.fault_step = success_at, stall_at, fault_step

    def stream(self, task):
        model = self

        class Scorer:
            t = 0

            def reset(self) -> None:
                self.t = 0

            def step(self, images, state=None) -> RewardOutput:
                assert all(np.asarray(f).shape == (SIZE, SIZE, 3) for f in images.values())
                self.t += 1
                if model.fault_step is not None and self.t == model.fault_step:
                    raise RuntimeError("reward model exploded")
                rising = self.t if model.stall_at is None else min(self.t, model.stall_at)
                progress = min(1.0, 0.05 * rising)
                success = 0.9 if model.success_at is not None and self.t >= model.success_at else 0.1
                probs = np.array([[1.0, 0.0, 0.0]])
                return RewardOutput(np.array([progress]), np.array([0]), probs, np.array([success]), np.array([0.0]))

        return Scorer()

    def score_episode(self, images, task, state=None, batch_size=256): ...

    def save(self, path) -> None: ...


def tiny_reward_model(path=None, size: int = SIZE) -> StageRewardModel:
    """An untrained tiny StageRewardModel (saved to `path` when given)."""
    torch.manual_seed(0)
    config = StageModelConfig(views=VIEWS, stage_names=STAGES, stage_proportions=(0.5, 0.2, 0.3), image_size=size, dim=32, window=4, ensemble=2)
    model = StageRewardModel(StageRewardNet(config), device="cpu")
    if path is not None:
        model.save(path)
    return model
