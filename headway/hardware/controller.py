"""The rollout controller: a policy on an arm at a fixed rate, with the process reward scoring live.

Each episode: reset (automatic in simulation, a keyboard prompt on a real arm), then at `fps`:
read the arm and cameras -> score the views with the reward model's streaming scorer -> ask the
policy -> send through the safety layer -> record the frame. An episode ends on success (success
probability over `success_threshold` for `success_steps` consecutive steps), on failure (progress
has not risen by `stall_progress` for `stall_seconds`), at the time limit, or when safety steps in
(watchdog, emergency stop, a dead or stale camera, an exception in the policy or reward model).
Whatever ends it, the arm is held, the episode is staged, and the session's LeRobot dataset is
written and closed before the controller returns or re-raises. Building a session from its config
(policy, reward model, arm) and its printed summary: headway/hardware/rollout_session.py.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from headway.atomic import read_json
from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.hardware.protocols import Arm, CameraError
from headway.hardware.rate import LoopStats, RateLoop
from headway.hardware.recording import (
    INTERRUPTED,
    SESSION_FILE,
    STAGING,
    EpisodeLog,
    load_staged,
    stage_episode,
    staged_path,
    staged_outcome,
    staged_paths,
    write_progress_video,
    write_rollout_dataset,
)
from headway.hardware.safety import KeyboardStop, SafetyConfig, SafetyLayer, stop_on_signals
from headway.perception.preprocess import resize_frames
from headway.policy.interface import Policy
from headway.reward.frame_rate import stream_at_rate
from headway.reward.interface import RewardModel
from headway.run_dir import RunDir
from headway.runtime import torch_threads
from headway.sim.task import get_task

log = logging.getLogger(__name__)


@dataclass
class RolloutConfig:
    """A rollout session: which arm, policy and reward model, how many episodes, where to record."""

    robot: str = "sim:lift"  # sim:<task> or lerobot:<robot type>
    policy: Path | None = None  # policy checkpoint folder (any registered format)
    reward: Path | str | None = None  # a checkpoint folder or a reward-model spec (lerobot:TYPE:PATH, gvl:MODEL)
    record: Path = Path("runs/rollout")  # LeRobot dataset folder to write
    robot_config: Path | None = None  # lerobot robots: JSON config (port, cameras, headway limits/views)
    episodes: int = 10
    fps: float = 20.0  # control rate in Hz
    resume: bool = False  # continue an interrupted session (keeps finished episodes)
    overwrite: bool = False  # replace an existing dataset or interrupted session
    instruction: str | None = None  # task text for the reward model (default: the sim task's / the robot config's)
    max_seconds: float | None = None  # per-episode time limit (arm time); default sim: the task horizon, real: 60 s
    success_threshold: float = 0.5
    success_steps: int = 3  # consecutive steps over the threshold that end an episode
    stall_seconds: float = 4.0  # failure when progress has not risen by stall_progress for this long
    stall_progress: float = 0.02
    image_size: int | None = None  # simulated camera size (default: the reward model's input size)
    seed: int = 0
    camera_max_age: float = 0.5
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    sim_watchdog_timeout: float = 5.0  # simulation waits for the policy: only a real stall should trip it
    reset: Literal["auto", "prompt"] | None = None  # between episodes: "auto" (simulation default) or "prompt" (real arm default)
    video: bool = True  # an MP4 preview with the progress bar
    device: str | None = None  # cpu or cuda; None: cuda when present
    vcodec: str = "libsvtav1"
    progress: bool = True
    torch_threads: int | None = 1  # intra-op threads while the loop runs: 1 keeps latency flat next to camera threads

    def __post_init__(self) -> None:
        self.record = Path(self.record)
        if self.episodes < 1:
            raise HeadwayError(f"--episodes must be at least 1, got {self.episodes}")
        if not self.fps > 0 or self.fps > 1000:
            raise HeadwayError(f"--fps must be in (0, 1000], got {self.fps}")
        if not self.robot.startswith(("sim:", "lerobot:")):
            raise HeadwayError(f"--robot {self.robot!r}: write sim:<task> (e.g. sim:lift) or lerobot:<type> (e.g. lerobot:so100_follower)")
        if not 0 < self.success_threshold < 1 or self.success_steps < 1:
            raise HeadwayError("success threshold must be in (0, 1) and success steps at least 1")
        if self.stall_seconds <= 0 or self.max_seconds is not None and self.max_seconds <= 0:
            raise HeadwayError("stall and time limits must be positive seconds")
        if self.reset not in (None, "auto", "prompt"):
            raise HeadwayError(f"reset must be 'auto' or 'prompt', got {self.reset!r}")
        if isinstance(self.safety, dict):
            self.safety = SafetyConfig(**self.safety)

    def identity(self) -> dict:
        """What must match for `--resume` to continue a session."""
        keep = ("robot", "policy", "reward", "fps", "instruction", "max_seconds", "success_threshold", "success_steps",
                "stall_seconds", "stall_progress", "image_size", "seed")
        data = asdict(self)
        return {k: (str(data[k]) if isinstance(data[k], Path) else data[k]) for k in keep}


class RolloutController:
    """Runs rollout episodes of `policy` on `arm` with `reward_model` scoring live (see module docstring)."""

    def __init__(self, arm: Arm, policy: Policy, reward_model: RewardModel, config: RolloutConfig, instruction: str) -> None:
        self.config = config
        self.arm = arm
        safety_config = config.safety
        if arm.is_simulated and safety_config.watchdog_timeout is not None:
            from dataclasses import replace

            safety_config = replace(safety_config, watchdog_timeout=max(safety_config.watchdog_timeout, config.sim_watchdog_timeout))
        self.safety = SafetyLayer(arm, safety_config)
        self.safety.set_rate(config.fps)
        self.policy = policy
        self.model = reward_model
        self.instruction = instruction
        self.model_views = tuple(v for v in reward_model.views if v in arm.views)
        if not self.model_views:
            raise HeadwayError(
                f"the reward model scores views {', '.join(reward_model.views)} but the arm has {', '.join(arm.views) or 'no cameras'}; "
                "name the cameras after the model's views (robot config 'headway.views')"
            )
        missing = [v for v in policy.views if v not in arm.views]
        if missing:
            raise HeadwayError(f"the policy reads views {', '.join(missing)} that the arm does not have ({', '.join(arm.views)})")
        self.dt = arm.control_period or 1.0 / config.fps
        default_seconds = 60.0
        if arm.is_simulated:
            default_seconds = get_task(config.robot.split(":", 1)[1]).horizon * self.dt
        self.max_steps = max(1, int(round((config.max_seconds or default_seconds) / self.dt)))
        self.stall_steps = max(1, int(round(config.stall_seconds / self.dt)))
        self.reset_mode = config.reset or ("auto" if arm.is_simulated else "prompt")
        self.loop_stats: list[LoopStats] = []
        self.keyboard: KeyboardStop | None = None
        self._first_index = -1

    # -- one episode -----------------------------------------------------------------------------------
    def run_episode(self, index: int, seed: int) -> tuple[EpisodeLog, BaseException | None]:
        """Run one episode; returns its log and the exception that ended it (if any). The arm ends held."""
        safety, config = self.safety, self.config
        episode = EpisodeLog(index, seed, self.instruction, tuple(self.arm.views))
        error: BaseException | None = None
        loop = RateLoop(config.fps)
        scorer = stream_at_rate(self.model, self.instruction, config.fps)  # the model's own frame rate, whatever the loop's
        streak, best, best_step = 0, -np.inf, 0
        started = time.monotonic()
        first_log = len(safety.log)
        threads = ExitStack()
        threads.enter_context(torch_threads(config.torch_threads))
        try:
            safety.reset_episode(seed)
            self.policy.reset()
            if index == self._first_index:  # warm the reward model up before the watchdog runs
                warm = safety.get_observation().images
                scorer.step({v: _resize(warm[v], self.model.image_size) for v in self.model_views})
            scorer.reset()
            safety.take_step_interventions()
            safety.arm_watchdog()
            if self.keyboard:
                self.keyboard.in_episode = True
            loop.start()
            for step in range(self.max_steps):
                if safety.stop_pending:
                    safety.emergency_stop(safety._stop_requested or "emergency stop")
                    episode.outcome, episode.detail = "estop", safety.stopped or ""
                    break
                obs = safety.get_observation()
                images = obs.images
                out = scorer.step({v: _resize(images[v], self.model.image_size) for v in self.model_views})
                action = self.policy.act(obs.policy_observation())
                if safety.watchdog_tripped:  # the watchdog already held the arm while we waited
                    sent = safety._last_sent.astype(np.float32)
                else:
                    sent = safety.send_action(action)
                count, mask = safety.take_step_interventions()
                progress, success = float(out.progress[0]), float(out.success[0])
                episode.add(
                    images,
                    obs.state,
                    sent,
                    reward_progress=progress,
                    reward_stage=int(out.stage[0]),
                    reward_success=success,
                    reward_uncertainty=float(out.uncertainty[0]),
                    safety_interventions=count,
                    safety_reasons=mask,
                    control_time=time.monotonic() - started,
                )
                if obs.extra.get("sim_success") is not None:
                    episode.true_success = max(episode.true_success, int(bool(obs.extra["sim_success"])))
                if safety.stopped:
                    episode.outcome, episode.detail = "estop", safety.stopped
                    break
                if safety.watchdog_tripped:
                    episode.outcome, episode.detail = "watchdog", f"no valid command within {safety.config.watchdog_timeout} s"
                    break
                streak = streak + 1 if success >= config.success_threshold else 0
                if streak >= config.success_steps:
                    episode.outcome = "success"
                    episode.detail = f"success probability >= {config.success_threshold} for {streak} steps"
                    break
                if progress >= best + config.stall_progress:
                    best, best_step = progress, step
                elif step - best_step >= self.stall_steps:
                    episode.outcome = "failure"
                    episode.detail = f"progress stalled at {progress:.2f} (best {best:.2f}) for {config.stall_seconds:g} s"
                    break
                loop.wait()
            else:
                episode.outcome, episode.detail = "timeout", f"time limit of {self.max_steps} steps"
        except CameraError as camera_error:
            episode.outcome, episode.detail = "camera", str(camera_error)
            error = camera_error
        except BaseException as exception:  # noqa: BLE001 - policy, reward model, Ctrl-C: all end held
            episode.outcome, episode.detail = "error", f"{type(exception).__name__}: {exception}"
            error = exception
        finally:
            if self.keyboard:
                self.keyboard.in_episode = False
            safety.disarm_watchdog()
            try:
                if self.arm.is_connected:
                    safety.hold("episode end")
            except Exception as hold_error:  # noqa: BLE001
                log.error("could not hold the arm at the end of the episode: %s", hold_error)
                error = error or hold_error
            threads.close()
            self.loop_stats.append(loop.stats())
            rows = safety.log[first_log:]
            episode.interventions = dict(Counter(row.reason for row in rows))
            episode.intervention_log = [[round(row.time - started, 4), row.reason, row.detail] for row in rows[:200]]
        if episode.true_success == -1 and self.arm.is_simulated:
            episode.true_success = 0
        return episode, error

    # -- a session ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the session's missing episodes, record them, return the summary."""
        config = self.config
        run = _run_dir(config)
        if run.open(config.resume, config.overwrite) == "complete":
            return {"dataset": str(config.record), "episodes": DatasetReader(config.record).num_episodes, "complete": True, "kept": True}
        partial = run.work
        (partial / STAGING).mkdir(exist_ok=True)
        if config.resume:
            for path in staged_paths(partial):
                if staged_outcome(path) in INTERRUPTED:
                    path.unlink()
        done = {int(p.stem.split("_")[1]) for p in staged_paths(partial)}
        todo = [i for i in range(config.episodes) if i not in done]
        before = Counter(self.safety.counts)
        error: BaseException | None = None
        aborted = False
        bar = tqdm(total=config.episodes, initial=len(done), desc=f"rollout {config.robot}", unit="ep", disable=not config.progress)
        try:
            with self.safety, stop_on_signals(self.safety):
                if not self.arm.is_simulated and sys.stdin is not None and sys.stdin.isatty():
                    self.keyboard = KeyboardStop(self.safety)
                self._first_index = todo[0] if todo else -1
                for n, index in enumerate(todo):
                    if n and self.reset_mode == "prompt" and not self._prompt_reset(index):
                        aborted = True
                        break
                    episode, error = self.run_episode(index, config.seed * 100_000 + index)
                    if episode.length:
                        stage_episode(staged_path(partial, index), episode)
                    bar.set_postfix(outcome=episode.outcome, progress=f"{episode.final_progress:.2f}")
                    bar.update()
                    if error is not None or episode.outcome in ("estop", "camera"):
                        aborted = True
                        break
        except BaseException as exception:  # noqa: BLE001 - connect/disconnect failures, second Ctrl-C
            error = error or exception
            aborted = True
        finally:
            bar.close()
            summary = self._finish(run, aborted, before)
        if error is not None and not isinstance(error, CameraError):
            raise error
        if isinstance(error, CameraError):
            summary["stopped"] = f"camera: {error}"
        return summary

    def _prompt_reset(self, index: int) -> bool:
        message = f"Episode {index}: reset the scene, then press Enter to start (q + Enter to stop)."
        if self.keyboard is not None:
            return self.keyboard.prompt(message)
        print(message, flush=True)
        try:
            return input().strip().lower() not in ("q", "quit")
        except EOFError:
            return False

    def _finish(self, run: RunDir, aborted: bool, before: Counter) -> dict[str, Any]:
        """Write and publish the dataset of every staged episode; drop the staging folder when complete."""
        config, partial = self.config, run.work
        paths = staged_paths(partial)
        complete = len(paths) >= config.episodes and not aborted
        episodes = [load_staged(p) for p in paths]
        video = None
        if episodes:
            build = partial / "dataset"
            if build.exists():
                shutil.rmtree(build)
            state_dim = episodes[0].state[0].shape[0]
            state_names = getattr(self.arm, "state_names", None) or [f"s{i}" for i in range(state_dim)]
            card = {
                "rollout": config.identity(),
                "robot": config.robot,
                "instruction": self.instruction,
                "stage_names": list(self.model.stage_names),
                "reward_views": list(self.model_views),
                "safety_reasons": "bit mask, see headway.hardware.safety.REASONS",
            }
            write_rollout_dataset(
                build, episodes, 1.0 / self.dt, config.robot.replace(":", "_"), f"headway/rollout_{config.robot.split(':', 1)[1]}",
                list(state_names), list(self.arm.limits.names), card, config.vcodec,
            )
            run.publish(build, done=complete)
            if config.video:
                chosen = next((e for e in episodes if e.success), episodes[0])
                try:
                    video = str(write_progress_video(_video_path(config.record), chosen, tuple(self.model.stage_names), 1.0 / self.dt))
                except Exception as video_error:  # noqa: BLE001 - a preview must not fail a session
                    log.warning("no preview video: %s", video_error)
        if complete:
            shutil.rmtree(partial, ignore_errors=True)
        stats = LoopStats.merge(self.loop_stats)
        interventions = dict(Counter(self.safety.counts) - before)
        outcomes = Counter(e.outcome for e in episodes)
        return {
            "dataset": str(config.record) if episodes else None,
            "video": video,
            "episodes": len(episodes),
            "complete": complete,
            "success_rate": float(np.mean([e.success for e in episodes])) if episodes else 0.0,
            "true_success_rate": float(np.mean([e.true_success == 1 for e in episodes])) if episodes and self.arm.is_simulated else None,
            "mean_final_progress": float(np.mean([e.final_progress for e in episodes])) if episodes else 0.0,
            "outcomes": dict(outcomes),
            "loop": stats.as_dict() if stats else None,
            "interventions": interventions,
            "interventions_total": int(sum(interventions.values())),
            "stopped": self.safety.stopped,
        }


def _video_path(record: Path) -> Path:
    return record.with_name(record.name + ".preview.mp4")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return resize_frames(np.asarray(image)[None], size)[0]


def _run_dir(config: RolloutConfig) -> RunDir:
    return RunDir(config.record, job="rollout session", identity=config.identity(), identity_file=SESSION_FILE,
                  finished=_finished_identity, flag="--record")


def _finished_identity(record: Path) -> dict | None:
    """The settings of the session recorded at `record` (None: not a headway rollout dataset)."""
    card = record / "meta" / "headway.json"
    return read_json(card).get("rollout") if card.exists() else None
