"""`SimArm`: a headway simulation task behind the `Arm` protocol, so every controller path runs without hardware.

The arm is the Panda of `HeadwayEnv` under OSC_POSE: actions are 7-D (position delta in units of
5 cm, axis-angle delta in units of 0.5 rad, gripper command), the state is the 9-D
proprioception (eef position, quaternion, fingers). Each camera is a `StaticCamera` fed with the
frames the simulator renders at each step, stamped with the time they were rendered.
Observations also carry the object state ("object") and the true scene readout ("sim_state",
for scripted reference policies) and true success ("sim_success"), never used by reward models.
"""

from __future__ import annotations

import time

import numpy as np

from headway.errors import HeadwayError
from headway.hardware.cameras import StaticCamera
from headway.hardware.protocols import COMMAND, DELTA, ArmContext, ArmLimits, ArmObservation
from headway.sim.env import CONTROL_FREQ, DEFAULT_VIEWS, PROPRIO_DIM, EnvConfig, HeadwayEnv
from headway.sim.task import get_task

ACTION_NAMES = ("dx", "dy", "dz", "dax", "day", "daz", "gripper")
POSITION_GAIN = 0.05  # metres of OSC target offset per action unit
ROTATION_GAIN = 0.5  # radians per action unit
# The Panda's reachable box over the table, in the world frame (table top at z = 0.8).
WORKSPACE_LOW = np.array([-0.45, -0.45, 0.76])
WORKSPACE_HIGH = np.array([0.45, 0.45, 1.45])


def sim_limits() -> ArmLimits:
    """Limits of the simulated Panda: at most 5 cm / 0.5 rad per step, 1.5 m/s, inside the workspace box."""
    return ArmLimits(
        names=ACTION_NAMES,
        low=-np.ones(7),
        high=np.ones(7),
        kind=(DELTA,) * 6 + (COMMAND,),
        gain=[POSITION_GAIN] * 3 + [ROTATION_GAIN] * 3 + [1.0],
        state_index=(0, 1, 2, None, None, None, None),
        target_low=list(WORKSPACE_LOW) + [-np.inf] * 4,
        target_high=list(WORKSPACE_HIGH) + [np.inf] * 4,
        max_step=[0.05] * 3 + [0.5] * 3 + [np.inf],
        max_velocity=[1.5] * 3 + [10.0] * 3 + [np.inf],
        hold=[0.0] * 6 + [-1.0],
    )


class SimArm(ArmContext):
    """A `HeadwayEnv` task as an arm; `reset_episode(seed)` resets the scene (automatic reset in simulation)."""

    is_simulated = True

    def __init__(
        self,
        task: str = "lift",
        views: tuple[str, ...] = DEFAULT_VIEWS,
        image_size: int = 84,
        camera_max_age: float = 0.5,
        fast_render: bool = True,
    ) -> None:
        self.env_config = EnvConfig(task=task, views=tuple(views), image_size=image_size, horizon=10**6, fast_render=fast_render)
        self.name = f"sim:{task}"
        self.task = task
        self._views = tuple(views)
        self.image_size = image_size
        self.cameras = {view: StaticCamera(view, max_age=camera_max_age) for view in self._views}
        self.env = None
        self._obs: dict | None = None
        self._state_time = 0.0
        self._success = False
        self._limits = sim_limits()
        self.steps = 0

    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        size = self.image_size
        return {"state": (PROPRIO_DIM,), **{f"images.{v}": (size, size, 3) for v in self._views}}

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        return {"action": (len(ACTION_NAMES),)}

    @property
    def limits(self) -> ArmLimits:
        return self._limits

    @property
    def views(self) -> tuple[str, ...]:
        return self._views

    @property
    def control_period(self) -> float:
        return 1.0 / CONTROL_FREQ

    @property
    def is_connected(self) -> bool:
        return self.env is not None

    @property
    def instruction(self) -> str:
        return get_task(self.task).instruction

    def connect(self) -> None:
        if self.env is not None:
            return
        self.env = HeadwayEnv(self.env_config)
        for camera in self.cameras.values():
            camera.connect()
        self.reset_episode(0)

    def disconnect(self) -> None:
        env, self.env = self.env, None
        for camera in self.cameras.values():
            camera.disconnect()
        if env is not None:
            env.close()

    def reset_episode(self, seed: int | None = None) -> None:
        self._require()
        obs, info = self.env.reset(seed=seed)
        self.steps = 0
        self._take(obs, bool(info["success"]))

    def get_observation(self) -> ArmObservation:
        self._require()
        for camera in self.cameras.values():  # the simulation waits for us: its newest frames show the scene as it is
            camera.touch()
        frames = {view: camera.read() for view, camera in self.cameras.items()}
        return ArmObservation(
            state=self._obs["state"].copy(),
            state_time=self._state_time,
            frames=frames,
            extra={"object": self._obs["object"].copy(), "sim_state": self.env.state(), "sim_success": self._success},
        )

    def read_state(self) -> np.ndarray:
        self._require()
        return self._obs["state"].copy()

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require()
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (len(ACTION_NAMES),) or not np.all(np.isfinite(action)):
            raise HeadwayError(f"SimArm takes a finite action of shape (7,), got {action.shape}; wrap it in SafetyLayer")
        sent = np.clip(action, self._limits.low, self._limits.high).astype(np.float32)
        obs, _, _, _, info = self.env.step(sent)
        self.steps += 1
        self._take(obs, bool(info["success"]))
        return sent

    def _take(self, obs: dict, success: bool) -> None:
        now = time.monotonic()
        self._obs = obs
        self._state_time = now
        self._success = success
        for view, camera in self.cameras.items():
            camera.put(obs["images"][view], now)

    def _require(self) -> None:
        if self.env is None:
            raise HeadwayError("SimArm is not connected; use `with SimArm(...) as arm:` or call connect()")
