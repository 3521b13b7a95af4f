"""Several `HeadwayEnv`s stepped together: in worker processes (both cores) or in this process.

The learner decides every reset and its seed (no auto-reset), so an episode's seed fixes it: a
vectorised rollout of seeds (s0, s1, ...) equals single-env rollouts of each seed with the same
actions (tests/test_rl_ibrl.py checks it). Each step returns, per env, the observation, the sparse
task reward, `terminated` (success, when the env terminates on it), `truncated` (the horizon) and a
small info dict: `success`, `robosuite_dense_reward` and `oracle_potential`, the simulator's true
progress (scene stage + within-stage progress) / number of stages, as `headway sim collect` records
it in `oracle.scene_stage` / `oracle.scene_tau`, for the oracle-potential bench arm.

Rendering happens only for the views asked for (none when the reward needs no camera), and only on
the steps asked for (a reward model reads every `stride`-th frame).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError
from headway.sim.env import MIN_IMAGE_SIZE, EnvConfig, HeadwayEnv


@dataclass(frozen=True)
class VecEnvSpec:
    """What every env is built from (picklable, sent to the workers)."""

    task: str
    views: tuple[str, ...] = ()
    image_size: int = 84
    horizon: int | None = None
    terminate_on_success: bool = True


def make_env(spec: VecEnvSpec):
    return HeadwayEnv(
        EnvConfig(
            spec.task,
            views=spec.views,
            image_size=spec.image_size if spec.views else MIN_IMAGE_SIZE,
            horizon=spec.horizon,
            terminate_on_success=spec.terminate_on_success,
        )
    )


class OracleProgress:
    """The simulator's true progress of one episode in [0, 1]: (scene stage + tau) / stages, with tau
    = 1 - distance / (the stage's distance when the episode first showed it), as collection records
    `oracle.scene_stage` / `oracle.scene_tau`."""

    def __init__(self, env) -> None:
        self.env = env
        self.start: dict[int, float] = {}

    def reset(self) -> None:
        self.start = {}

    def __call__(self) -> float:
        from headway.sim.rollout import scene_stage_now  # deferred: sim.rollout loads robosuite/mujoco

        task, state = self.env.task, self.env.state()
        stage = scene_stage_now(task, state, self.env)
        distance = task.stage_distance(stage, state)
        start = self.start.setdefault(stage, max(distance, 1e-6))
        tau = float(np.clip(1.0 - distance / start, 0.0, 1.0))
        return (stage + tau) / len(task.stages)


class _Slot:
    """One env and its oracle, driven by `handle(command, argument)` (in a worker or in process)."""

    def __init__(self, spec: VecEnvSpec) -> None:
        self.env = make_env(spec)
        self.oracle = OracleProgress(self.env)

    def handle(self, command: str, argument):
        if command == "reset":
            observation, info = self.env.reset(seed=int(argument))
            self.oracle.reset()
            return observation, {"oracle_potential": self.oracle(), "robosuite_dense_reward": info["robosuite_dense_reward"]}
        if command == "step":
            action, render = argument
            observation, reward, terminated, truncated, info = self.env.step(action, render=render)
            small = {
                "success": bool(info["success"]),
                "robosuite_dense_reward": float(info["robosuite_dense_reward"]),
                "oracle_potential": self.oracle(),
            }
            return observation, float(reward), bool(terminated), bool(truncated), small
        if command == "spaces":
            return self.env.observation_space, self.env.action_space
        raise HeadwayError(f"unknown vec-env command {command!r}")

    def close(self) -> None:
        self.env.close()


def _exit_with_parent() -> None:
    """A worker whose learner was killed (kill -9 included) exits instead of lingering."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _worker(remote, spec: VecEnvSpec) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _exit_with_parent()
    slot = None
    try:
        slot = _Slot(spec)
        remote.send(("ok", None))
        while True:
            command, argument = remote.recv()
            if command == "close":
                break
            try:
                remote.send(("ok", slot.handle(command, argument)))
            except Exception as error:  # the caller re-raises it with the worker's traceback
                remote.send(("error", (str(error), traceback.format_exc(), isinstance(error, HeadwayError))))
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception as error:
        try:
            remote.send(("error", (str(error), traceback.format_exc(), isinstance(error, HeadwayError))))
        except Exception:
            pass
    finally:
        if slot is not None:
            slot.close()
        remote.close()


class VecEnv:
    """`num_envs` envs of one spec; `processes` True runs each in its own worker process (spawned)."""

    def __init__(self, spec: VecEnvSpec, num_envs: int, processes: bool = True) -> None:
        if num_envs < 1:
            raise HeadwayError(f"the number of envs must be at least 1, got {num_envs}")
        self.spec, self.num_envs, self.processes = spec, num_envs, processes
        self.closed = False
        if processes:
            context = multiprocessing.get_context("spawn")
            self.remotes, self.workers = [], []
            for _ in range(num_envs):
                local, remote = context.Pipe()
                worker = context.Process(target=_worker, args=(remote, spec), daemon=True)
                worker.start()
                remote.close()
                self.remotes.append(local)
                self.workers.append(worker)
            for local in self.remotes:
                self._receive(local)
        else:
            self.slots = [_Slot(spec) for _ in range(num_envs)]
        self.observation_space, self.action_space = self._call([0], "spaces", [None])[0]

    def _receive(self, local):
        try:
            status, value = local.recv()
        except EOFError:
            raise HeadwayError("an env worker process died; see its output above") from None
        if status == "error":
            message, trace, user_error = value
            if user_error:
                raise HeadwayError(message)
            raise RuntimeError(f"env worker failed: {message}\n{trace}")
        return value

    def _call(self, indices: list[int], command: str, arguments: list) -> list:
        if self.processes:
            for i, argument in zip(indices, arguments):
                self.remotes[i].send((command, argument))
            return [self._receive(self.remotes[i]) for i in indices]
        return [self.slots[i].handle(command, argument) for i, argument in zip(indices, arguments)]

    def reset(self, indices: list[int], seeds: list[int]) -> list[tuple[dict, dict]]:
        """Reset the envs `indices` with these seeds; (observation, info) for each."""
        return self._call(list(indices), "reset", list(seeds))

    def step(self, actions: np.ndarray, indices: list[int] | None = None, render: list[bool] | None = None) -> list[tuple]:
        """Step the envs `indices` (default: all) with one action row each, in parallel; `render[k]`
        False skips env k's cameras this step (its observation then has no images)."""
        indices = list(range(self.num_envs)) if indices is None else list(indices)
        actions = np.asarray(actions, np.float32)
        if actions.shape[0] != len(indices):
            raise HeadwayError(f"{actions.shape[0]} actions for {len(indices)} envs")
        render = [True] * len(indices) if render is None else [bool(r) for r in render]
        if len(render) != len(indices):
            raise HeadwayError(f"{len(render)} render flags for {len(indices)} envs")
        return self._call(indices, "step", list(zip(actions, render)))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.processes:
            for local in self.remotes:
                try:
                    local.send(("close", None))
                except (BrokenPipeError, OSError):
                    pass
            for worker in self.workers:
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.kill()
        else:
            for slot in self.slots:
                slot.close()

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
