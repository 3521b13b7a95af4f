"""What a simulated task is: its robosuite scene, named stages, state readout and expert plan.

Each task lives in its own module under `headway/sim/tasks/` and registers one `Task` instance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headway.registry import Registry

State = dict[str, Any]
"""Ground-truth readout of the scene: positions in metres, world frame (numpy arrays)."""


@dataclass
class Phase:
    """One waypoint of a scripted expert: drive the end effector to `target`, with the gripper set.

    `target(state)` is re-evaluated every step, so targets follow objects that move.
    The phase ends when `done(state, steps_in_phase)` holds (default: within `tolerance`
    of the target and at least `min_steps` taken), or after `max_steps`.
    """

    stage: int
    target: Callable[[State], np.ndarray]
    gripper: float  # -1 open, +1 closed
    yaw: Callable[[State], float] | None = None
    tolerance: float = 0.01
    min_steps: int = 0
    max_steps: int = 60
    done: Callable[[State, int], bool] | None = None
    speed: float = 1.0
    grasp_point: bool = False  # the phase where the fingers must land on the object
    carrying: bool = False  # the object is held during this phase

    def is_done(self, state: State, steps: int, position_error: float) -> bool:
        if steps >= self.max_steps:
            return True
        if steps < self.min_steps:
            return False
        if self.done is not None:
            return self.done(state, steps)
        return position_error < self.tolerance


@dataclass(frozen=True)
class Task(ABC):
    """A manipulation task over a robosuite environment with named stages."""

    name: str
    robosuite_env: str
    instruction: str
    stages: tuple[str, ...]
    horizon: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    failable_stages: tuple[int, ...] = ()  # where `stall` / `away` may strike (empty: every stage but the first)

    @abstractmethod
    def read_state(self, env) -> State:
        """Ground-truth scene readout from the robosuite env (always has `eef`, `eef_yaw`, `gripper`)."""

    @abstractmethod
    def plan(self, state: State, rng: np.random.Generator) -> list[Phase]:
        """The expert's waypoints for this episode, from the initial state."""

    @abstractmethod
    def stage_completed(self, stage: int, state: State, env) -> bool:
        """Whether `stage` has truly been achieved in this state (checked at the stage's end)."""

    @abstractmethod
    def stage_distance(self, stage: int, state: State) -> float:
        """A distance that falls to 0 as `stage` completes; the oracle's within-stage progress."""

    def miss_offset(self, state: State, distance: float) -> np.ndarray:
        """Where a `miss_grasp` rollout puts the fingers instead, relative to the grasp point:
        `distance` (signed) level and square to the finger travel, so the fingers close beside the object."""
        across = state["eef_rot"][:, 1] * np.array([1.0, 1.0, 0.0])
        return distance * across / max(float(np.linalg.norm(across)), 1e-9)

    def success(self, env) -> bool:
        return bool(env._check_success())


TASKS: Registry[Task] = Registry("task")


def get_task(name: str) -> Task:
    """The registered task `name` (error lists the valid names)."""
    # deferred: the built-in tasks load robosuite, and import TASKS from here (a cycle)
    import headway.sim.tasks  # noqa: F401  (registers the built-in tasks)

    return TASKS.get(name)


def task_names() -> list[str]:
    import headway.sim.tasks  # noqa: F401  (deferred: robosuite, and a cycle, as in get_task)

    return TASKS.names()
