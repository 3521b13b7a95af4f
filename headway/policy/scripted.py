"""A reference policy for simulated rollouts: the task's scripted expert as a `Policy` (format "headway.scripted").

It reads the true scene state that `SimArm` puts in each observation ("sim_state"), so it runs
only in simulation. Its checkpoint is a folder with a `config.json` and no weights:

    {"format": "headway.scripted", "task": "lift", "mode": "expert", "seed": 0}

`mode` is a behaviour of `headway.sim.expert` (expert, noisy, fail); with "fail", `failure`
names the failure kind (default: drawn per episode).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_json, read_json
from headway.errors import HeadwayError
from headway.policy.interface import Observation, Policy
from headway.sim.env import PROPRIO_DIM
from headway.sim.expert import ScriptedExpert, sample_behaviour
from headway.sim.task import get_task

FORMAT = "headway.scripted"


class ScriptedPolicy:
    """The scripted expert of a simulation task behind the `Policy` protocol."""

    def __init__(self, task: str = "lift", mode: str = "expert", seed: int = 0, failure: str | None = None) -> None:
        self._task = get_task(task)
        self.mode, self.seed, self.failure = mode, int(seed), failure
        self._episode = 0
        self._expert: ScriptedExpert | None = None
        sample_behaviour(mode, self._task, np.random.default_rng(0), failure)  # validates mode and failure

    task = property(lambda self: self._task.name)
    views = property(lambda self: ())
    state_dim = property(lambda self: PROPRIO_DIM)
    action_dim = property(lambda self: 7)

    def reset(self) -> None:
        self._expert = None

    def act(self, observation: Observation) -> np.ndarray:
        state = observation.get("sim_state")
        if state is None:
            raise HeadwayError(
                "the scripted policy reads the true scene state and runs only in simulation (--robot sim:<task>)"
            )
        if self._expert is None:
            rng = np.random.default_rng([self.seed, self._episode])
            self._episode += 1
            self._expert = ScriptedExpert(self._task, sample_behaviour(self.mode, self._task, rng, self.failure), rng)
            self._expert.reset(state)
        return np.asarray(self._expert.act(state), dtype=np.float32)

    def save(self, path: Path) -> None:
        payload = {"format": FORMAT, "task": self.task, "mode": self.mode, "seed": self.seed}
        if self.failure:
            payload["failure"] = self.failure
        atomic_write_json(Path(path) / "config.json", payload)


def load_scripted(path: Path, device: str | None = None) -> Policy:
    meta = read_json(Path(path) / "config.json")
    return ScriptedPolicy(meta.get("task", "lift"), meta.get("mode", "expert"), meta.get("seed", 0), meta.get("failure"))
