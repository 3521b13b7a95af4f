"""Run one scripted episode and record everything a dataset needs: frames, stages, outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from headway.sim.affordances import AFFORDANCES, record_keypoints
from headway.sim.env import HeadwayEnv
from headway.stages import Subtask
from headway.sim.expert import Behaviour, ScriptedExpert

SETTLE_STEPS = 6  # an episode ends once success has held this many steps


@dataclass
class EpisodeRecord:
    """A recorded episode. Frame t holds the observation before action t; `next_*` follow it."""

    task: str
    instruction: str
    seed: int
    behaviour: Behaviour
    images: dict[str, np.ndarray]  # view -> (T, H, W, 3) uint8
    state: np.ndarray  # (T, 9)
    object_state: np.ndarray  # (T, D)
    action: np.ndarray  # (T, 7)
    next_success: np.ndarray  # (T,) bool
    next_reward: np.ndarray  # (T,) sparse task reward
    next_dense_reward: np.ndarray  # (T,) robosuite's shaped reward, in [0, 1]
    expert_stage: np.ndarray  # (T,) stage the expert worked on
    oracle_stage: np.ndarray  # (T,) ground-truth stage (never past the first stage not achieved)
    oracle_tau: np.ndarray  # (T,) ground-truth within-stage progress in [0, 1]
    scene_stage: np.ndarray  # (T,) the stage the scene shows now: falls when achieved work is undone (a drop)
    scene_tau: np.ndarray  # (T,) within-stage progress of scene_stage, by distance, in [0, 1]
    extrinsics: dict[str, np.ndarray]  # view -> (T, 4, 4) camera-to-world
    intrinsics: dict[str, np.ndarray]  # view -> (3, 3)
    subtasks: list[Subtask] = field(default_factory=list)
    success: bool = False
    success_frame: int | None = None
    quality: float = 0.0
    keypoint_names: tuple[str, ...] = ()  # the task's affordance keypoints (headway.sim.affordances)
    keypoints: np.ndarray | None = None  # (T, K, 3) world positions, ground truth
    keypoint_visibility: dict[str, np.ndarray] = field(default_factory=dict)  # view -> (T, K) bool

    @property
    def length(self) -> int:
        return int(self.action.shape[0])

    @property
    def mode(self) -> str:
        return self.behaviour.label


def episode_quality(success: bool, success_frame: int | None, horizon: int, final_progress: float) -> float:
    """Orders rollouts of one task worst to best: failures by how far they got, successes by speed."""
    if success and success_frame is not None:
        return 1.0 + (1.0 - success_frame / horizon)
    return float(np.clip(final_progress, 0.0, 0.999))


def run_episode(env: HeadwayEnv, behaviour: Behaviour, seed: int) -> EpisodeRecord:
    """Reset with `seed`, run the scripted expert under `behaviour`, and record the episode."""
    task = env.task
    stage_count = len(task.stages)
    obs, _ = env.reset(seed=seed)
    state = env.state()
    expert = ScriptedExpert(task, behaviour, np.random.default_rng([seed, 7]))
    expert.reset(state)
    views = env.config.views
    frames: dict[str, list[np.ndarray]] = {v: [] for v in views}
    poses: dict[str, list[np.ndarray]] = {v: [] for v in views}
    rows: dict[str, list] = {
        k: []
        for k in ("state", "object", "action", "success", "dense", "stage", "oracle_stage", "oracle_tau", "scene_stage", "scene_tau")
    }
    affordances = AFFORDANCES.get(task.name)
    keypoints: list[np.ndarray] = []
    keypoint_visibility: dict[str, list[np.ndarray]] = {v: [] for v in views}
    verdicts: list[bool | None] = [None] * stage_count  # was stage k achieved when the expert left it?
    start_distance: dict[int, float] = {}
    streak = 0
    finished_frame = None  # first frame after the expert completed its whole plan
    for t in range(env.horizon):
        for v in views:
            frames[v].append(obs["images"][v])
            poses[v].append(env.extrinsics(v))
        if affordances is not None:
            points, visible = record_keypoints(env, state)
            keypoints.append(points)
            for v in views:
                keypoint_visibility[v].append(visible[v])
        rows["state"].append(obs["state"])
        rows["object"].append(obs["object"])
        stage = expert.stage
        oracle_stage = next((k for k in range(stage) if verdicts[k] is False), stage)
        distance = task.stage_distance(oracle_stage, state)
        start = start_distance.setdefault(oracle_stage, max(distance, 1e-6))
        rows["oracle_stage"].append(oracle_stage)
        rows["oracle_tau"].append(float(np.clip(1.0 - distance / start, 0.0, 1.0)))
        scene_stage = min(scene_stage_now(task, state, env), oracle_stage)
        scene_distance = task.stage_distance(scene_stage, state)
        rows["scene_stage"].append(scene_stage)
        rows["scene_tau"].append(float(np.clip(1.0 - scene_distance / start_distance.get(scene_stage, max(scene_distance, 1e-6)), 0.0, 1.0)))
        rows["stage"].append(stage)

        action = expert.act(state)
        obs, _, terminated, truncated, info = env.step(action)
        state = env.state()
        if expert.stage < stage:  # a recovery: the expert starts earlier stages over, so they are judged again
            for k in range(expert.stage, stage_count):
                verdicts[k] = None
                start_distance.pop(k, None)
        elif expert.stage != stage and verdicts[stage] is None:
            verdicts[stage] = task.stage_completed(stage, state, env.robosuite_env)
        rows["action"].append(info["action"])
        rows["success"].append(info["success"])
        rows["dense"].append(info["robosuite_dense_reward"])
        if expert.finished and finished_frame is None:
            finished_frame = t + 1
        streak = streak + 1 if info["success"] else 0
        if (streak >= SETTLE_STEPS and expert.finished) or terminated or truncated:
            break

    next_success = np.array(rows["success"], dtype=bool)
    length = len(next_success)
    success = bool(next_success[-1])
    success_frame = None  # first frame from which the task is done: success holds and the plan is complete
    if success:
        failures = np.flatnonzero(~next_success)
        success_frame = int(failures[-1]) + 2 if failures.size else 1
        success_frame = min(max(success_frame, finished_frame or 0), length - 1)
    expert_stage = np.array(rows["stage"], dtype=np.int64)
    oracle_stage = np.array(rows["oracle_stage"], dtype=np.int64)
    oracle_tau = np.array(rows["oracle_tau"], dtype=np.float32)
    scene_stage = np.array(rows["scene_stage"], dtype=np.int64)
    scene_tau = np.array(rows["scene_tau"], dtype=np.float32)
    if success_frame is not None:
        for stages, taus in ((oracle_stage, oracle_tau), (scene_stage, scene_tau)):
            stages[success_frame:] = stage_count - 1
            taus[success_frame:] = 1.0
    subtasks = annotate(task.stages, expert_stage, verdicts, success_frame)
    final_progress = (oracle_stage[-1] + oracle_tau[-1]) / stage_count
    return EpisodeRecord(
        task=task.name,
        instruction=task.instruction,
        seed=seed,
        behaviour=behaviour,
        images={v: np.stack(frames[v]) for v in views},
        state=np.stack(rows["state"]).astype(np.float32),
        object_state=np.stack(rows["object"]).astype(np.float32),
        action=np.stack(rows["action"]).astype(np.float32),
        next_success=next_success,
        next_reward=next_success.astype(np.float32),
        next_dense_reward=np.array(rows["dense"], dtype=np.float32),
        expert_stage=expert_stage,
        oracle_stage=oracle_stage,
        oracle_tau=oracle_tau,
        scene_stage=scene_stage,
        scene_tau=scene_tau,
        extrinsics={v: np.stack(poses[v]) for v in views},
        intrinsics={v: env.intrinsics(v) for v in views},
        subtasks=subtasks,
        success=success,
        success_frame=success_frame,
        quality=episode_quality(success, success_frame, env.horizon, float(final_progress)),
        keypoint_names=affordances.names if affordances is not None else (),
        keypoints=np.stack(keypoints).astype(np.float32) if keypoints else None,
        keypoint_visibility={v: np.stack(keypoint_visibility[v]) for v in views} if keypoints else {},
    )


def scene_stage_now(task, state, env: HeadwayEnv) -> int:
    """One past the furthest stage whose completion condition holds in the scene right now.

    Unlike the annotations, this goes back when achieved work is undone: a dropped cube lies on the
    table with the gripper away from it, so no stage holds and the scene is back at the first.
    """
    for stage in range(len(task.stages) - 1, -1, -1):
        if task.stage_completed(stage, state, env.robosuite_env):
            return min(stage + 1, len(task.stages) - 1)
    return 0


def annotate(
    stage_names: tuple[str, ...], expert_stage: np.ndarray, verdicts: list[bool | None], success_frame: int | None
) -> list[Subtask]:
    """The stages truly achieved, in order, as contiguous non-overlapping frame ranges.

    A stage counts only if it was verified when the expert left it (the last stage: if the task
    succeeded); annotation stops at the first stage not achieved, so failures are labelled with
    the progress they really made.
    """
    # A recovery goes back to an earlier stage and does it again: the abandoned attempt belongs to the
    # stage that had to be redone (the suffix minimum), so the ranges stay contiguous and in order and
    # each stage's range is the attempt that achieved it. Monotone stage sequences are unchanged.
    expert_stage = np.minimum.accumulate(np.asarray(expert_stage)[::-1])[::-1]
    subtasks: list[Subtask] = []
    last = len(stage_names) - 1
    for k, name in enumerate(stage_names):
        frames = np.flatnonzero(expert_stage == k)
        if frames.size == 0:
            break
        start = int(frames[0])
        if k < last:
            later = np.flatnonzero(expert_stage > k)
            if not verdicts[k] or later.size == 0:
                break
            end = int(later[0]) - 1
        else:
            if success_frame is None:
                break
            end = success_frame
        if end < start:
            break
        subtasks.append(Subtask(name, start, end))
    return subtasks
