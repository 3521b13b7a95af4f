"""Gymnasium environment over robosuite tasks with any subset of cameras."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from headway.errors import HeadwayError, unknown_name
from headway.sim.randomization import SceneRandomizer, validate_randomization
from headway.sim.task import State, Task, get_task


VIEWS = ("agentview", "robot0_eye_in_hand", "frontview", "sideview")
DEFAULT_VIEWS = ("agentview", "robot0_eye_in_hand")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024
PROPRIO_DIM = 9  # eef position (3), eef quaternion xyzw (4), gripper finger positions (2)
CONTROL_FREQ = 20


@dataclass
class EnvConfig:
    """How to build a `HeadwayEnv`."""

    task: str = "lift"
    views: tuple[str, ...] = DEFAULT_VIEWS
    image_size: int = 84
    horizon: int | None = None  # None: the task's default
    terminate_on_success: bool = False
    fast_render: bool = True
    env_overrides: dict[str, Any] = field(default_factory=dict)
    # domain randomisation applied once per episode at reset (headway.sim.randomization): kind -> strength
    randomize: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.views = tuple(self.views)
        self.randomize = validate_randomization(dict(self.randomize or {}))
        get_task(self.task)  # raises with the valid names
        for view in self.views:
            if view not in VIEWS:
                raise unknown_name("camera", view, VIEWS)
        if len(set(self.views)) != len(self.views):
            raise HeadwayError(f"camera views repeat: {list(self.views)}; name each view once")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise HeadwayError(
                f"image size {self.image_size} cannot be rendered; choose a square size between "
                f"{MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels"
            )
        if self.horizon is not None and self.horizon < 1:
            raise HeadwayError(f"horizon must be a positive number of steps, got {self.horizon}")


class HeadwayEnv(gym.Env):
    """A robosuite task as a Gymnasium env.

    Observations: {"images": {view: uint8 HxWx3}, "state": proprioception, "object": object state}.
    Reward: 1.0 on task success else 0.0 (robosuite's shaped reward is in `info`).
    `terminated` only on success and only when `terminate_on_success`; `truncated` at the horizon.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, config: EnvConfig | None = None) -> None:
        import robosuite
        from robosuite import macros
        from robosuite.controllers import load_composite_controller_config

        macros.IMAGE_CONVENTION = "opencv"  # images upright, matching the OpenCV camera model
        self.config = config or EnvConfig()
        self.task: Task = get_task(self.config.task)
        self.horizon = self.config.horizon or self.task.horizon
        views = list(self.config.views)
        size = self.config.image_size
        kwargs = dict(self.task.env_kwargs)
        kwargs.update(self.config.env_overrides)
        with _seeded_scene_construction():
            self._env = robosuite.make(
                self.task.robosuite_env,
                robots="Panda",
                controller_configs=load_composite_controller_config(controller="BASIC"),
                has_renderer=False,
                has_offscreen_renderer=bool(views),
                use_camera_obs=bool(views),
                camera_names=views or "agentview",
                camera_heights=size,
                camera_widths=size,
                control_freq=CONTROL_FREQ,
                horizon=self.horizon,
                ignore_done=True,
                hard_reset=False,
                reward_shaping=True,
                reward_scale=1.0,
                **kwargs,
            )
        if self.config.fast_render:
            from headway.sim.rendering import apply_fast_rendering  # deferred: rendering imports robosuite

            apply_fast_rendering(self._env.sim.model._model)
        self._randomizer = None
        self.scene = None  # the last episode's RandomizedScene when randomising
        if self.config.randomize:
            self._randomizer = SceneRandomizer(self._env, self.config.randomize, tuple(views))
        low, high = self._env.action_spec
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        obs = self._env.reset()
        self._object_dim = int(obs["object-state"].shape[0])
        image_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({view: image_space for view in views}),
                "state": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
                "object": gym.spaces.Box(-np.inf, np.inf, (self._object_dim,), np.float32),
            }
        )
        self._steps = 0
        self._last_obs: dict | None = None
        self._rendering = True
        self._gate_cameras()

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed)
        self._rendering = True  # an episode's first frame is always rendered
        self._make_context_current()
        self._last_obs = self._env.reset()
        if self._randomizer is not None:
            # the scene is drawn from the episode's seed (or the env's own stream when no seed is given)
            scene_seed = seed if seed is not None else int(self.np_random.integers(2**31))
            self.scene = self._randomizer.apply(scene_seed)
            self._last_obs = self._env._get_observations(force_update=True)
        self._steps = 0
        return self._observation(self._last_obs), {"success": self.task.success(self._env), "robosuite_dense_reward": float(self._env.reward(None))}

    def step(self, action: np.ndarray, render: bool = True):
        """`render` False skips the cameras for this step (the observation then has no images)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise HeadwayError(f"action has shape {action.shape}; this env takes {self.action_space.shape}")
        if not np.all(np.isfinite(action)):
            raise HeadwayError("action contains NaN or inf; the env only steps finite actions")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        self._rendering = bool(render)
        if self._rendering:
            self._make_context_current()
        self._last_obs, dense_reward, _, _ = self._env.step(action)
        self._steps += 1
        success = self.task.success(self._env)
        terminated = bool(success and self.config.terminate_on_success)
        truncated = bool(self._steps >= self.horizon and not terminated)
        info = {"success": success, "robosuite_dense_reward": float(dense_reward), "action": action}
        return self._observation(self._last_obs), float(success), terminated, truncated, info

    def render(self) -> np.ndarray:
        assert self._last_obs is not None, "call reset() first"
        if not self._rendering:
            raise HeadwayError("the last step was taken with render=False; step with render=True to get images")
        return np.concatenate([self._last_obs[f"{v}_image"] for v in self.config.views], axis=1)

    def close(self) -> None:
        self._env.close()

    # -- headway extras --------------------------------------------------------------------------
    @property
    def robosuite_env(self):
        return self._env

    @property
    def steps(self) -> int:
        return self._steps

    def state(self) -> State:
        """Ground-truth scene state (for experts, oracles and tests; never for reward models)."""
        return self.task.read_state(self._env)

    def intrinsics(self, view: str) -> np.ndarray:
        from headway.sim.rendering import camera_intrinsics  # deferred: rendering imports robosuite

        self._check_view(view)
        return camera_intrinsics(self._env.sim, view, self.config.image_size)

    def extrinsics(self, view: str) -> np.ndarray:
        from headway.sim.rendering import camera_extrinsics  # deferred: rendering imports robosuite

        self._check_view(view)
        return camera_extrinsics(self._env.sim, view)

    def _make_context_current(self) -> None:
        """robosuite renders into whichever GL context is current; with several envs in one process
        (or one closed) that is not always this env's, so make it current before rendering."""
        context = getattr(self._env.sim, "_render_context_offscreen", None)
        if context is not None:
            context.gl_ctx.make_current()

    def _gate_cameras(self) -> None:
        """Route each camera's sensor through `_rendering`: off, it returns a blank frame instead of
        rendering. The observables keep robosuite's sampling schedule either way, so a rendered step's
        images equal those of an env that renders every step."""
        for view in self.config.views:
            name = f"{view}_image"
            sensor = self._env._observables[name]._sensor
            blank = np.zeros((self.config.image_size, self.config.image_size, 3), np.uint8)

            def gated(obs_cache, sensor=sensor, blank=blank):
                return sensor(obs_cache) if self._rendering else blank

            gated.__modality__ = sensor.__modality__
            self._env.modify_observable(name, "sensor", gated)

    def _check_view(self, view: str) -> None:
        if view not in self.config.views:
            raise unknown_name("camera of this env", view, self.config.views)

    def _reseed(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._env.rng = rng
        stack = [getattr(self._env, "placement_initializer", None)]
        while stack:
            sampler = stack.pop()
            if sampler is None:
                continue
            sampler.rng = rng
            stack.extend(getattr(sampler, "samplers", {}).values())

    def _observation(self, obs: dict) -> dict:
        proprio = np.concatenate(
            [obs["robot0_eef_pos"], obs["robot0_eef_quat"], obs["robot0_gripper_qpos"]]
        ).astype(np.float32)
        return {
            "images": {v: np.ascontiguousarray(obs[f"{v}_image"]) for v in self.config.views} if self._rendering else {},
            "state": proprio,
            "object": obs["object-state"].astype(np.float32),
        }


@contextmanager
def _seeded_scene_construction():
    """robosuite samples object sizes from unseeded `np.random.default_rng()` while building a scene;
    seed those draws so every process builds the same scene (episodes then depend on their seed only)."""
    unseeded = np.random.default_rng

    def seeded(seed=None, *args, **kwargs):
        return unseeded(0 if seed is None else seed, *args, **kwargs)

    np.random.default_rng = seeded
    try:
        yield
    finally:
        np.random.default_rng = unseeded


def make_env(task: str = "lift", **kwargs: Any) -> HeadwayEnv:
    """Build a `HeadwayEnv` for `task`; keyword arguments go to `EnvConfig`."""
    return HeadwayEnv(EnvConfig(task=task, **kwargs))
