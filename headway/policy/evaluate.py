"""Roll out any headway Policy in HeadwayEnv: success rate, returns, episode lengths, MP4 videos.

The one place that runs evaluation episodes, for `headway policy eval` and both RL trainers:
- `run_eval_episode(policy, env, seed, record)`: one seeded episode in one env, its row;
  `evaluate_policy` loops it (locally or on Ray), headway/policy/rl_train.py's `evaluate_agent` too.
- `run_vec_eval_episodes(act, env, episodes, seed)`: the same rows from a vectorised env
  (headway/policy/vec_env.py), episodes spread over its slots; headway/policy/rl_runner.py's `evaluate`.
- `summarize_episodes(rows)`: the figures every caller reports.

Episodes end at success (`terminated`, Gymnasium semantics) or at the task's horizon (`truncated`).
A row is (seed, success, return, dense_return, length): `return` is the undiscounted sum of the
sparse task reward (1 on the success step, so per episode it equals success); `dense_return` sums
robosuite's hand-designed shaped reward, a graded measure of how far a failing rollout got.
Held-out seeds: episode i runs on seed `DEFAULT_EVAL_SEED + i` unless another base seed is given;
the training data's seeds stay out of that block (collection uses `seed * 100000 + index`, RL
training `training_episode_seed`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from headway.errors import HeadwayError
from headway.executors import RaySession, RaySettings
from headway.policy.interface import Policy
from headway.runtime import set_torch_threads, torch_threads
from headway.sim.env import EnvConfig, HeadwayEnv
from headway.sim.task import get_task

DEFAULT_EVAL_SEED = 900_000
TRAIN_SEED_STRIDE = 100_000  # each RL run (training seed) owns a block of this many environment seeds
MAX_TRAIN_SEED = 999
VIDEO_VIEW = "agentview"
VIDEO_SIZE = 128


def training_episode_seed(run_seed: int, index: int) -> int:
    """The environment seed of training episode `index` of the RL run with training seed `run_seed`.

    Run s owns the block s * 100000 ...; from run 9 on, the block after it, so no training episode
    ever uses the held-out block (DEFAULT_EVAL_SEED ...) that evaluations run on."""
    if not 0 <= run_seed <= MAX_TRAIN_SEED:
        raise HeadwayError(f"the training seed must be in [0, {MAX_TRAIN_SEED}], got {run_seed}")
    block = run_seed if run_seed < DEFAULT_EVAL_SEED // TRAIN_SEED_STRIDE else run_seed + 1
    return block * TRAIN_SEED_STRIDE + index % TRAIN_SEED_STRIDE


def check_policy_fits(policy: Policy, task: str, env) -> None:
    """Clear errors when a policy was trained for another task or observation/action layout than `env`
    (with `env` None, only the task is checked)."""
    if policy.task != task:
        raise HeadwayError(
            f"the policy was trained for task {policy.task!r}, not {task!r}; pass a checkpoint trained on {task}"
        )
    if env is None:
        return
    state_dim = int(env.observation_space["state"].shape[0])
    if policy.state_dim and policy.state_dim != state_dim:
        raise HeadwayError(f"the policy reads a {policy.state_dim}-value state; {task} gives {state_dim}: another robot layout")
    object_dim = getattr(policy, "object_dim", 0)
    env_object = int(env.observation_space["object"].shape[0])
    if object_dim and object_dim != env_object:
        raise HeadwayError(
            f"the policy reads a {object_dim}-value object state; {task} gives {env_object}: the checkpoint is for another task layout"
        )
    action_dim = int(env.action_space.shape[0])
    if policy.action_dim != action_dim:
        raise HeadwayError(f"the policy outputs {policy.action_dim} action values; {task} takes {action_dim}")


def write_video(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> Path:
    """Write RGB uint8 frames (H, W, 3) to an MP4 with PyAV (H.264 when available, else MPEG-4 part 2)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.mp4")
    height, width = frames[0].shape[:2]
    for codec in ("libx264", "h264", "mpeg4"):
        try:
            with av.open(str(temporary), mode="w") as container:
                stream = container.add_stream(codec, rate=int(round(fps)))
                stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
                for frame in frames:
                    image = np.ascontiguousarray(frame[: stream.height, : stream.width])
                    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            temporary.replace(path)
            return path
        except (av.error.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
            temporary.unlink(missing_ok=True)
    raise HeadwayError(f"could not encode {path}: PyAV has none of libx264, h264, mpeg4")


def _make_env(task: str, views: tuple[str, ...], image_size: int, horizon: int | None):
    return HeadwayEnv(EnvConfig(task=task, views=views, image_size=image_size, horizon=horizon, terminate_on_success=True))


def evaluate_policy(
    policy: Policy,
    task: str,
    episodes: int = 50,
    seed: int = DEFAULT_EVAL_SEED,
    videos: int = 0,
    video_dir: Path | None = None,
    horizon: int | None = None,
    progress: bool = True,
    ray: RaySettings | None = None,
) -> dict:
    """Roll `policy` out for `episodes` seeded episodes of `task`; returns figures and per-episode rows.

    Keys: success_rate, mean_return, mean_dense_return, mean_length, episodes, seed, seconds,
    per_episode (seed, success, return, dense_return, length), videos (paths). The first `videos`
    episodes are also recorded from the agentview camera (plus the policy's own views) to `video_dir`.
    With `ray` (headway.executors), the episodes run on Ray workers, one seed each, with the same
    per-seed results; `seconds` then leaves out Ray's start-up and the workers' loading.
    """
    if episodes < 1:
        raise HeadwayError(f"--episodes must be at least 1, got {episodes}")
    if videos < 0 or videos > episodes:
        raise HeadwayError(f"--videos must be between 0 and --episodes ({episodes}), got {videos}")
    if videos and video_dir is None:
        raise HeadwayError("videos asked for but no folder to write them to; pass video_dir")
    get_task(task)  # clear error for an unknown task
    if policy.task != task:  # before building an env: the cheap, common mistake
        check_policy_fits(policy, task, None)
    size = getattr(policy, "image_size", None) or VIDEO_SIZE
    views = tuple(policy.views)
    env = _make_env(task, views, size, horizon)
    check_policy_fits(policy, task, env)
    rows: list[dict] = []
    written: list[str] = []
    started = time.perf_counter()
    if ray is not None:
        env.close()
        rows, written, startup = _evaluate_on_ray(policy, task, episodes, seed, videos, video_dir, horizon, size, ray, progress)
        started += startup
    else:
        video_env = None
        if videos:
            video_views = tuple(dict.fromkeys(views + (VIDEO_VIEW,)))
            video_env = env if video_views == views else _make_env(task, video_views, size, horizon)
        bar = tqdm(range(episodes), desc=f"eval {task}", disable=not progress)
        try:
            with torch_threads(1):  # small policies: intra-op threads only add contention (headway.runtime)
                for i in bar:
                    record = i < videos
                    row, frames = run_eval_episode(policy, video_env if record else env, seed + i, record)
                    if record:
                        written.append(str(_write_eval_video(video_dir, task, row, frames)))
                    rows.append(row)
                    bar.set_postfix(success=f"{np.mean([r['success'] for r in rows]):.2f}")
        finally:
            env.close()
            if video_env is not None and video_env is not env:
                video_env.close()
    return {
        "task": task,
        "episodes": episodes,
        "seed": seed,
        **summarize_episodes(rows),
        "seconds": time.perf_counter() - started,
        "per_episode": rows,
        "videos": written,
    }


def summarize_episodes(rows: list[dict], counters: tuple[str, ...] = ()) -> dict:
    """The figures of evaluation rows: success_rate, mean_return (sparse), mean_dense_return,
    mean_length, successes (0/1 per row, in order) and, per name in `counters` (a per-step count
    kept by `run_vec_eval_episodes`), the fraction of all the rows' steps it counted."""
    figures = {
        "success_rate": float(np.mean([r["success"] for r in rows])),
        "mean_return": float(np.mean([r["return"] for r in rows])),
        "mean_dense_return": float(np.mean([r["dense_return"] for r in rows])),
        "mean_length": float(np.mean([r["length"] for r in rows])),
        "successes": [int(r["success"]) for r in rows],
    }
    for name in counters:
        figures[name] = float(sum(r.get(name, 0) for r in rows) / max(1, sum(r["length"] for r in rows)))
    return figures


def run_eval_episode(policy: Policy, env, seed: int, record: bool) -> tuple[dict, list[np.ndarray]]:
    """One seeded episode of `policy` in `env`: its row (seed, success, return, dense_return, length)
    and, when `record`, its frames (all of the env's views side by side)."""
    observation, _ = env.reset(seed=seed)
    policy.reset()
    frames: list[np.ndarray] = []
    row = _new_row(seed)
    while True:
        if record:
            frames.append(np.concatenate([observation["images"][v] for v in env.config.views], axis=1))
        observation, reward, terminated, truncated, info = env.step(policy.act(observation))
        _add_step(row, reward, info)
        if terminated or truncated:
            break
    if record:
        frames.append(np.concatenate([observation["images"][v] for v in env.config.views], axis=1))
    return row, frames


def _new_row(seed: int) -> dict:
    return {"seed": seed, "success": False, "return": 0.0, "dense_return": 0.0, "length": 0}


def _add_step(row: dict, reward: float, info: dict) -> None:
    """Count one env step into an episode's row."""
    row["success"] = row["success"] or bool(info["success"])
    row["return"] += reward
    row["dense_return"] += info["robosuite_dense_reward"]
    row["length"] += 1


def run_vec_eval_episodes(
    act: Callable[[list[int], list[dict]], tuple[np.ndarray, dict[str, np.ndarray]]],
    env,
    episodes: int,
    seed: int = DEFAULT_EVAL_SEED,
    start: Callable[[int], None] | None = None,
) -> list[dict]:
    """Episodes on seeds seed + i (i < `episodes`) spread over the slots of a vectorised env
    (headway/policy/vec_env.py's VecEnv): each slot takes the next seed when its episode ends. Returns
    the rows of `run_eval_episode`, in seed order, so per seed the same as one env gives.

    `act(slots, observations)` gives one action row per active slot (ascending) and a dict of per-step
    counts (name -> one number per slot, e.g. {"used_rl": ...}; {} for none), summed into each
    episode's row under that name. `start(slot)` is called after a slot's env is reset for an
    episode, to reset what acts in that slot (a policy's action queue)."""
    queue = list(range(episodes))
    active: dict[int, tuple[int, dict, dict]] = {}  # slot -> (episode index, observation, row)
    rows: dict[int, dict] = {}

    def begin(slot: int) -> None:
        episode = queue.pop(0)
        observation, _ = env.reset([slot], [seed + episode])[0]
        if start is not None:
            start(slot)
        active[slot] = (episode, observation, _new_row(seed + episode))

    for slot in range(min(env.num_envs, episodes)):
        begin(slot)
    while active:
        slots = sorted(active)
        actions, counts = act(slots, [active[s][1] for s in slots])
        for k, (s, result) in enumerate(zip(slots, env.step(actions, slots))):
            observation, reward, terminated, truncated, info = result
            episode, _, row = active[s]
            _add_step(row, reward, info)
            for name, values in counts.items():
                row[name] = row.get(name, 0) + int(values[k])
            active[s] = (episode, observation, row)
            if terminated or truncated:
                rows[episode] = row
                del active[s]
                if queue:
                    begin(s)
    return [rows[i] for i in range(episodes)]


def _write_eval_video(video_dir: Path | None, task: str, row: dict, frames: list[np.ndarray]) -> Path:
    outcome = "success" if row["success"] else "fail"
    return write_video(Path(video_dir) / f"{task}_seed{row['seed']}_{outcome}.mp4", frames)


class EpisodeEvaluator:
    """Runs seeded evaluation episodes of one policy; the body of a Ray evaluation worker."""

    def __init__(self, policy: Policy, task: str, views: tuple[str, ...], size: int, horizon: int | None) -> None:
        import os

        os.environ.setdefault("MUJOCO_GL", "egl")
        set_torch_threads(1)  # as the local loop's torch_threads(1)
        self.policy, self.task, self.views, self.size, self.horizon = policy, task, views, size, horizon
        self.envs: dict[tuple[str, ...], object] = {}

    def run(self, job: tuple[int, bool]) -> tuple[dict, list[np.ndarray]]:
        seed, record = job
        views = tuple(dict.fromkeys(self.views + (VIDEO_VIEW,))) if record else self.views
        if views not in self.envs:
            self.envs[views] = _make_env(self.task, views, self.size, self.horizon)
        return run_eval_episode(self.policy, self.envs[views], seed, record)


def _evaluate_on_ray(policy, task, episodes, seed, videos, video_dir, horizon, size, ray, progress) -> tuple[list[dict], list[str], float]:
    """Every seed as a Ray work item; rows come back in seed order, videos are written here. Also
    returns the start-up seconds (connecting to Ray, workers loading the policy and simulator)."""
    rows: dict[int, dict] = {}
    written: dict[int, str] = {}

    def keep(job: tuple[int, bool], result: tuple[dict, list[np.ndarray]]) -> None:
        row, frames = result
        rows[job[0]] = row
        if job[1]:
            written[job[0]] = str(_write_eval_video(video_dir, task, row, frames))

    jobs = [(seed + i, i < videos) for i in range(episodes)]
    with RaySession(ray) as session:
        session.run(EpisodeEvaluator, (policy, task, tuple(policy.views), size, horizon), jobs, keep, ahead=1,
                    desc=f"eval {task}", unit="ep", name=lambda job: f"seed {job[0]}", progress=progress)
    return [rows[s] for s, _ in jobs], [written[s] for s, record in jobs if record], session.startup_seconds + session.warmup_seconds


def render_summary(report: dict, name: str = "policy") -> str:
    return (
        f"{name}: success {100 * report['success_rate']:.0f}% over {report['episodes']} episodes of {report['task']} "
        f"(seeds {report['seed']}-{report['seed'] + report['episodes'] - 1}), mean return {report['mean_return']:.3f}, "
        f"mean dense return {report['mean_dense_return']:.2f}, mean length {report['mean_length']:.1f} steps"
    )
