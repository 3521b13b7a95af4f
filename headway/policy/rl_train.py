"""Online RL in the simulator: SAC with demonstrations in replay and a reward from any source.

`train_rl(RLConfig, resume)` runs the loop with a progress bar, periodic evaluation on held-out
seeds, atomic checkpoints (resume after a kill at any moment continues from the last one),
CSV and TensorBoard logs and a learning-curve PNG.

Layout of `out/`:
    config.json              the run's RLConfig (a resumed run must match it)
    checkpoints/step_N/      train_state.pt (agent, optimisers, RNGs, counters), replay.npz, headway/policy/
    latest.json              which checkpoint is the last complete one (written last, atomically)
    headway/policy/                  the latest SAC policy (format "headway.sac"; `load_policy` opens it)
    demo_buffer.npz          demonstration transitions with their rewards (computed once)
    train.csv, eval.csv      one row per training episode / evaluation
    tb/                      TensorBoard events
    learning_curve.png       success rate and return against environment steps
    summary.json             the returned summary

Initialisation (`init`): any headway policy. Its architecture generally differs from the SAC
actor, so the actor is distilled from it: the init policy labels every demonstration state with
its action and the actor regresses onto those actions for `distill_steps`. Without `init`,
`pretrain_steps` > 0 clones the successful demonstrations' own actions instead. After either,
`critic_pretrain` critic-only updates on the demonstrations run before the first env step and the
first `critic_warmup` online updates train the critics only, so a random critic cannot undo the
initialisation; `sac.bc_weight` > 0 keeps a behaviour-cloning term on demonstration rows (TD3+BC
style; only transitions of successful demonstration episodes are imitated). Even so, plain
fine-tuning degrades a good clone on lift (the critic is poor early and exploration rarely
succeeds). Two options keep the initial actor frozen as a reference (headway/policy/sac.py): `sac.residual`
(the actor learns a bounded correction to the reference's action; the one that kept and sometimes
improved the start in bench/rl.py) and `sac.ibrl` (IBRL: act and bootstrap with the reference's
action wherever the critics value it more); the exported policy acts the same way. A third option
changes the actor's objective instead: `sac.actor_update = "awac"` imitates replay actions weighted
by their advantage, so the actor never follows the critics toward actions nobody took.
`sac.exploration = "held"` explores with the initialised actor's own spread instead of widening
it toward SAC's entropy target. `pretrain_lr` clones at its own rate; fine-tuning then goes on at
`sac.actor_lr`.
Measurements: README, "Online RL".

An interrupted episode is not resumed mid-way: after `--resume` the next episode starts from a
fresh reset (its seed continues the sequence), which off-policy learning does not mind.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from headway.atomic import atomic_write_json, latest_checkpoint, publish_checkpoint, publish_copy
from headway.csvlog import CsvLog, read_rows
from headway.errors import HeadwayError
from headway.policy.evaluate import DEFAULT_EVAL_SEED, run_eval_episode, summarize_episodes, training_episode_seed
from headway.policy.interface import load_policy
from headway.policy.replay import ReplayBuffer, demo_transitions, fill_demo_buffer, mixed_batch, read_demo_episodes
from headway.policy.reward_sources import REWARD_SOURCES, OnlineReward, RewardNaNError, check_shaping, default_shaping, make_reward_source
from headway.policy.sac import SACAgent, SACConfig, SACPolicy, SACPolicyConfig, observation_vector
from headway.reward.shaping import SHAPINGS
from headway.run_dir import RunDir
from headway.runtime import default_device, torch_threads
from headway.sim.env import MIN_IMAGE_SIZE, EnvConfig, HeadwayEnv
from headway.sim.task import get_task

TRAIN_FIELDS = ["step", "episode", "return", "task_return", "success", "length", "seconds"]
EVAL_FIELDS = ["step", "success_rate", "mean_return", "mean_length", "seconds"]


@dataclass
class RLConfig:
    """One online RL run."""

    task: str = "lift"
    reward: str = "sparse"  # sparse | robosuite-dense | prm:CKPT
    shaping: str | None = None  # pbrs | delta | kagi | none; None: pbrs with a model, none otherwise
    init: Path | None = None  # any headway policy checkpoint to distil into the actor
    demos: Path | None = None  # a LeRobot dataset kept in replay
    steps: int = 50_000  # environment steps
    out: Path = Path("runs/rl")  # run folder (checkpoints, logs, policy, learning curve)
    eval_every: int = 5_000
    eval_episodes: int = 10
    checkpoint_every: int | None = None  # None: at every evaluation
    seed: int = 0
    horizon: int | None = None  # None: the task's
    batch_size: int = 256
    utd: int = 1  # gradient updates per env step
    demo_ratio: float = 0.5
    random_steps: int | None = None  # uniform-random actions first; None: 0 with an initialised actor, else 1000
    distill_steps: int = 2_000  # with an init: supervised steps distilling it
    pretrain_steps: int = 0  # without an init: clone the successful demos first
    pretrain_lr: float | None = None  # learning rate of cloning / distillation; None: the actor's (sac.actor_lr)
    critic_warmup: int | None = None  # None: 500 updates with an initialised actor, else 0
    critic_pretrain: int = 0  # critic-only updates on the demonstrations before the first env step
    demo_episodes: int | None = None  # use only the first N demonstration episodes
    success_weight: float = 0.0  # potential = (1 - w) progress + w success probability
    sac: SACConfig = field(default_factory=SACConfig)
    device: str | None = None  # cpu or cuda; None: cuda when present
    threads: int | None = 1  # CPU threads for torch (None: torch's default); small MLPs gain nothing from more
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.init = Path(self.init) if self.init is not None else None
        self.demos = Path(self.demos) if self.demos is not None else None
        if isinstance(self.sac, dict):
            self.sac = SACConfig(**self.sac)
        get_task(self.task)
        _check_names(self.reward, self.shaping)
        for name in ("steps", "eval_every", "eval_episodes", "batch_size", "utd"):
            if getattr(self, name) < 1:
                raise HeadwayError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise HeadwayError(f"checkpoint-every must be at least 1, got {self.checkpoint_every}")
        if not 0.0 <= self.demo_ratio < 1.0:
            raise HeadwayError(f"demo ratio must be in [0, 1), got {self.demo_ratio}")
        if self.init is not None and self.demos is None:
            raise HeadwayError("--init needs --demos: the actor is distilled from the init policy on the demonstration states")
        if self.pretrain_lr is not None and self.pretrain_lr <= 0:
            raise HeadwayError(f"pretrain learning rate must be positive, got {self.pretrain_lr}")
        if self.pretrain_steps and self.demos is None:
            raise HeadwayError("pretraining clones demonstrations; give --demos")
        if self.sac.uses_reference and not self.initialised:
            raise HeadwayError("IBRL and residual keep the initial actor as their reference; initialise it with --init or pretrain steps > 0")
        if self.sac.exploration == "held" and not self.initialised:
            raise HeadwayError("held exploration keeps the initialised actor's spread; initialise it with --init or pretrain steps > 0")
        if self.init is not None and not (self.init / "config.json").exists():
            raise HeadwayError(f"--init {self.init} is not a headway policy checkpoint (no config.json)")
        if self.demos is not None and not (self.demos / "meta" / "info.json").exists():
            raise HeadwayError(f"--demos {self.demos} is not a LeRobot dataset (no meta/info.json)")
        training_episode_seed(self.seed, 0)  # the seed range, checked before any work

    @property
    def initialised(self) -> bool:
        return self.init is not None or self.pretrain_steps > 0

    def identity(self) -> dict:
        """What a resumed run must share with the one it continues (not `steps`: a run may be extended)."""
        data = asdict(self)
        for key in ("steps", "progress", "device", "threads", "eval_every", "checkpoint_every"):
            data.pop(key)
        for key in ("out", "init", "demos"):
            data[key] = None if data[key] is None else str(data[key])
        data["sac"]["hidden"] = list(data["sac"]["hidden"])
        return data


# -- small helpers ------------------------------------------------------------------------------------
def _check_names(reward: str, shaping: str | None) -> None:
    """Unknown reward-source or shaping names fail before any work, listing the valid ones."""
    name = reward.partition(":")[0]
    if name not in REWARD_SOURCES:
        valid = ", ".join("prm:CKPT" if n == "prm" else n for n in sorted(REWARD_SOURCES.names()))
        raise HeadwayError(f"unknown reward source {reward!r}; valid reward sources: {valid}")
    if shaping is not None:
        SHAPINGS.get(shaping)


def _make_env(config: RLConfig, views: tuple[str, ...], image_size: int):
    # no cameras at all when the reward needs none: rendering dominates the cost of a step
    return HeadwayEnv(
        EnvConfig(
            config.task,
            views=views,
            image_size=image_size if views else MIN_IMAGE_SIZE,
            horizon=config.horizon,
            terminate_on_success=True,
        )
    )


def _check_action_space(env) -> None:
    if not (np.allclose(env.action_space.low, -1.0) and np.allclose(env.action_space.high, 1.0)):
        raise HeadwayError(f"the SAC agent acts in [-1, 1]; this env's action space is {env.action_space}")


def plot_learning_curve(eval_rows: list[dict], train_rows: list[dict], path: Path, title: str) -> Path:
    """Success rate and mean return against environment steps, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [int(float(r["step"])) for r in eval_rows]
    axes[0].plot(steps, [float(r["success_rate"]) for r in eval_rows], marker="o")
    axes[0].set(xlabel="environment steps", ylabel="success rate (held-out seeds)", ylim=(-0.05, 1.05), title=title)
    if train_rows:
        axes[1].plot([int(float(r["step"])) for r in train_rows], [float(r["return"]) for r in train_rows], ".", alpha=0.4, label="training return")
    axes[1].plot(steps, [float(r["mean_return"]) for r in eval_rows], marker="o", label="eval dense return")
    axes[1].set(xlabel="environment steps", ylabel="return")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


class _DeterministicAgent:
    """The agent's deterministic action behind the Policy protocol's act/reset (no state to reset)."""

    def __init__(self, agent: SACAgent) -> None:
        self.agent = agent

    def reset(self) -> None:
        pass

    def act(self, observation: dict) -> np.ndarray:
        return self.agent.act(observation_vector(observation), deterministic=True)


def evaluate_agent(agent: SACAgent, env, episodes: int, seed: int = DEFAULT_EVAL_SEED) -> dict:
    """Deterministic actions on the held-out seeds seed + i, episodes run by headway/policy/evaluate.py:
    success rate, mean robosuite dense return (logged as `mean_return`: eval.csv's column), mean length."""
    policy = _DeterministicAgent(agent)
    figures = summarize_episodes([run_eval_episode(policy, env, seed + i, record=False)[0] for i in range(episodes)])
    return {"success_rate": figures["success_rate"], "mean_return": figures["mean_dense_return"], "mean_length": figures["mean_length"]}


# -- checkpoints --------------------------------------------------------------------------------------
def _policy(agent: SACAgent, config: RLConfig, state_dim: int, object_dim: int) -> SACPolicy:
    c = config.sac
    policy_config = SACPolicyConfig(
        config.task, state_dim, object_dim, agent.action_dim, c.hidden, {"reward": config.reward}, c.ibrl, c.critics, c.critic_layer_norm, c.ibrl_q, c.residual
    )
    return SACPolicy.from_agent(agent, policy_config)


def _save_checkpoint(out: Path, step: int, payload: dict, replay: ReplayBuffer, policy: SACPolicy) -> Path:
    """Publish checkpoints/step_N (the newest only, see `publish_checkpoint`), then the user-facing policy folder."""

    def write(folder: Path) -> None:
        torch.save(payload, folder / "train_state.pt")
        np.savez(folder / "replay.npz", **replay.state())
        policy.save(folder / "policy")

    final = publish_checkpoint(out, step, write, keep=1)
    publish_copy(final / "policy", out / "policy")
    return final


def _load_checkpoint(out: Path) -> tuple[dict, ReplayBuffer] | None:
    folder = latest_checkpoint(out)
    if folder is None:
        return None
    payload = torch.load(folder / "train_state.pt", map_location="cpu", weights_only=False)
    with np.load(folder / "replay.npz") as data:
        replay = ReplayBuffer.from_state({k: data[k] for k in data.files})
    return payload, replay


# -- initialisation -----------------------------------------------------------------------------------
def _demo_observation(episode, t: int, state_dim: int) -> dict:
    return {
        "state": episode.obs[t, :state_dim],
        "object": episode.obs[t, state_dim:],
        "images": {v: frames[t] for v, frames in (episode.images or {}).items()},
    }


def _distil(agent: SACAgent, config: RLConfig, episodes, state_dim: int, device: torch.device) -> dict:
    teacher = load_policy(config.init, device=config.device)
    if teacher.task != config.task:
        raise HeadwayError(f"--init {config.init} is a policy for task {teacher.task!r}, not {config.task!r}; pass a {config.task} policy")
    if teacher.state_dim != state_dim or teacher.action_dim != agent.action_dim:
        raise HeadwayError(
            f"--init {config.init} takes state {teacher.state_dim} / action {teacher.action_dim}; this env has state "
            f"{state_dim} / action {agent.action_dim}. It was trained on another observation layout"
        )
    obs, actions = [], []
    for episode in episodes:
        for t in range(len(episode.obs)):
            teacher.reset()  # the action of this state (a chunking policy would otherwise replay its queue)
            actions.append(np.asarray(teacher.act(_demo_observation(episode, t, state_dim)), np.float32))
            obs.append(episode.obs[t])
    obs_t = torch.as_tensor(np.stack(obs), device=device)
    actions_t = torch.as_tensor(np.clip(np.stack(actions), -1, 1), device=device)
    loss = agent.pretrain_actor(obs_t, actions_t, config.distill_steps, config.batch_size, config.pretrain_lr)
    return {"init": str(config.init), "distill_states": len(obs), "distill_loss": loss}


def _pretrain(agent: SACAgent, config: RLConfig, episodes, device: torch.device) -> dict:
    obs, actions = [], []
    for episode in episodes:
        if episode.success.any():
            frames, _ = demo_transitions(episode)
            obs.append(episode.obs[frames])
            actions.append(episode.action[frames])
    if not obs:
        raise HeadwayError("no successful demonstration to pretrain on; pass demonstrations with successes or set pretrain steps to 0")
    loss = agent.pretrain_actor(
        torch.as_tensor(np.concatenate(obs), device=device),
        torch.as_tensor(np.clip(np.concatenate(actions), -1, 1), device=device),
        config.pretrain_steps,
        config.batch_size,
        config.pretrain_lr,
    )
    return {"pretrain_transitions": int(sum(len(o) for o in obs)), "pretrain_loss": loss}


# -- the loop -----------------------------------------------------------------------------------------
def train_rl(config: RLConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train (or continue, with `resume`; or start over, with `overwrite`) a run in `config.out`;
    returns a summary with the final success rate, the learning-curve PNG and the policy folder."""
    with torch_threads(config.threads if default_device(config.device).type == "cpu" else None):
        return _train_rl(config, resume, overwrite)


def _train_rl(config: RLConfig, resume: bool, overwrite: bool) -> dict:
    from torch.utils.tensorboard import SummaryWriter

    started = time.perf_counter()
    out = config.out
    device = default_device(config.device)
    source = make_reward_source(config.reward, config.task, config.device, config.success_weight)
    shaping = check_shaping(config.shaping or default_shaping(source), source)
    identity = config.identity() | {"shaping": shaping}

    RunDir(out, job="RL run", identity=identity, identity_file="config.json", defaults=RLConfig().identity()).open(resume, overwrite)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    env = _make_env(config, source.views, source.image_size)
    eval_env = _make_env(config, (), 0)
    _check_action_space(env)
    first, _ = env.reset(seed=training_episode_seed(config.seed, 0))
    state_dim, object_dim = len(first["state"]), len(first["object"])
    action_dim = int(env.action_space.shape[0])
    agent = SACAgent(state_dim + object_dim, action_dim, config.sac, device)
    online_reward = OnlineReward(source, shaping, config.sac.gamma)
    info: dict = {"reward": config.reward, "shaping": shaping}

    # demonstrations: transitions with rewards from this run's source, computed once and kept on disk
    demos = None
    demo_file = out / "demo_buffer.npz"
    episodes = None
    checkpoint = _load_checkpoint(out) if resume else None
    if config.demos is not None:
        if demo_file.exists() and checkpoint is not None:
            with np.load(demo_file) as data:
                demos = ReplayBuffer.from_state({k: data[k] for k in data.files})
                if "cloneable" in data.files:
                    demos.cloneable = data["cloneable"]
        else:
            views = tuple(source.views) if source.has_potential else ()
            if config.init is not None:
                views = tuple(dict.fromkeys(views + tuple(load_policy(config.init).views)))
            episodes = read_demo_episodes(config.demos, views, config.demo_episodes)
            if episodes[0].obs.shape[1] != state_dim + object_dim or episodes[0].action.shape[1] != action_dim:
                raise HeadwayError(
                    f"--demos {config.demos} has state+object {episodes[0].obs.shape[1]} / action {episodes[0].action.shape[1]}; "
                    f"{config.task} needs {state_dim + object_dim} / {action_dim}. Use demonstrations of this task"
                )
            demos = fill_demo_buffer(episodes, online_reward.demo_rewards)
            tmp = out / ".demo_buffer.tmp.npz"
            np.savez(tmp, **demos.state(), cloneable=demos.cloneable)
            os.replace(tmp, demo_file)
        info["demo_transitions"] = len(demos)
        stats = demos.obs[: len(demos)]
        agent.set_normalisation(stats.mean(0), stats.std(0))

    step, episode_index, last_eval, last_checkpoint = 0, 0, -1, -1
    if checkpoint is not None:
        payload, replay = checkpoint
        started -= payload.get("seconds", 0.0)  # logged and summarised times count the whole run, not this part
        agent.load_state_dict(payload["agent"])
        rng.bit_generator.state = payload["numpy_rng"]
        torch.set_rng_state(payload["torch_rng"])
        step, episode_index = payload["step"], payload["episode"]
        last_eval = last_checkpoint = step
        info.update(payload.get("info", {}))
        info["resumed_from"] = step
    else:
        replay = ReplayBuffer(max(config.steps, 1), state_dim + object_dim, action_dim)
        if config.init is not None:
            info.update(_distil(agent, config, episodes, state_dim, device))
        elif config.pretrain_steps:
            info.update(_pretrain(agent, config, episodes, device))
        if config.sac.exploration == "held":
            info["held_spread"] = agent.hold_spread(torch.as_tensor(stats, device=device))
        if config.sac.uses_reference:
            agent.freeze_reference()
        if config.critic_pretrain and demos is not None:
            empty = ReplayBuffer(1, state_dim + object_dim, action_dim)
            for _ in range(config.critic_pretrain):
                batch, _ = mixed_batch(empty, demos, config.batch_size, rng, config.demo_ratio, device)
                metrics = agent.update(batch, actor=False)
            info["critic_pretrain_loss"] = metrics["critic_loss"]
    random_steps = config.random_steps if config.random_steps is not None else (0 if config.initialised else 1000)
    critic_warmup = config.critic_warmup if config.critic_warmup is not None else (500 if config.initialised else 0)
    checkpoint_every = config.checkpoint_every or config.eval_every

    keep_up_to = step if checkpoint is not None else -1  # rows logged after the checkpoint are redone
    train_log = CsvLog(out / "train.csv", TRAIN_FIELDS, read_rows(out / "train.csv", keep_up_to))
    eval_rows = read_rows(out / "eval.csv", keep_up_to)
    eval_log = CsvLog(out / "eval.csv", EVAL_FIELDS, eval_rows)
    eval_rows = list(eval_rows)
    writer = SummaryWriter(str(out / "tb"), purge_step=step if checkpoint is not None else None)

    def payload_now() -> dict:
        return {
            "agent": agent.state_dict(),
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "episode": episode_index,
            "info": {k: v for k, v in info.items() if k != "resumed_from"},
            "seconds": time.perf_counter() - started,
        }

    def run_eval() -> dict:
        result = evaluate_agent(agent, eval_env, config.eval_episodes)
        row = {"step": step, **result, "seconds": round(time.perf_counter() - started, 1)}
        eval_log.write(row)
        eval_rows.append(row)
        for key, value in result.items():
            writer.add_scalar(f"eval/{key}", value, step)
        writer.flush()
        return result

    bar = tqdm(total=config.steps, initial=min(step, config.steps), desc=f"rl {config.task} {config.reward.split(':')[0]}+{shaping}", unit="step", disable=not config.progress, mininterval=2.0)
    episode_return = episode_task_return = 0.0
    episode_length = 0
    episode_success = False
    last_metrics: dict = {}
    try:
        if step == 0:
            run_eval()
            last_eval = 0
        observation, _ = env.reset(seed=training_episode_seed(config.seed, episode_index))
        online_reward.reset(observation, step)
        obs_vec = observation_vector(observation)
        while step < config.steps:
            if step < random_steps:
                action = rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)
            else:
                action = agent.act(obs_vec)
            next_observation, env_reward, terminated, truncated, step_info = env.step(action)
            reward, task_reward, _ = online_reward.step(env_reward, next_observation, terminated, step_info, step + 1)
            next_vec = observation_vector(next_observation)
            replay.add(obs_vec, action, reward, next_vec, terminated)  # truncation is not terminal: bootstrap
            step += 1
            episode_return += reward
            episode_task_return += task_reward
            episode_length += 1
            episode_success = episode_success or bool(step_info["success"])
            obs_vec = next_vec

            if step > random_steps and len(replay) + (len(demos) if demos is not None else 0) >= config.batch_size:
                for _ in range(config.utd):
                    batch, demo_mask = mixed_batch(replay, demos, config.batch_size, rng, config.demo_ratio, device)
                    last_metrics = agent.update(batch, actor=agent.updates >= config.critic_pretrain + critic_warmup, demo_mask=demo_mask)
                if step % 100 == 0:
                    for key, value in last_metrics.items():
                        writer.add_scalar(f"train/{key}", value, step)

            if terminated or truncated:
                row = {
                    "step": step,
                    "episode": episode_index,
                    "return": round(episode_return, 5),
                    "task_return": round(episode_task_return, 5),
                    "success": int(episode_success),
                    "length": episode_length,
                    "seconds": round(time.perf_counter() - started, 1),
                }
                train_log.write(row)
                writer.add_scalar("train/episode_return", episode_return, step)
                writer.add_scalar("train/episode_success", float(episode_success), step)
                episode_index += 1
                episode_return = episode_task_return = 0.0
                episode_length = 0
                episode_success = False
                observation, _ = env.reset(seed=training_episode_seed(config.seed, episode_index))
                online_reward.reset(observation, step)
                obs_vec = observation_vector(observation)

            if step % config.eval_every == 0 or step == config.steps:
                if last_eval != step:
                    result = run_eval()
                    last_eval = step
                    bar.set_postfix(success=f"{result['success_rate']:.2f}", ret=f"{result['mean_return']:.1f}")
            if step % checkpoint_every == 0 or step == config.steps:
                _save_checkpoint(out, step, payload_now(), replay, _policy(agent, config, state_dim, object_dim))
                last_checkpoint = step
            bar.update()
    except RewardNaNError as error:
        kept = f"the last good checkpoint (step {last_checkpoint}) is kept in {out}" if last_checkpoint >= 0 else "no checkpoint was written yet"
        raise RewardNaNError(f"{error}; training stopped, {kept}. Fix the reward model, then rerun with --resume") from None
    finally:
        bar.close()
        train_log.close()
        eval_log.close()
        writer.close()
        env.close()
        eval_env.close()

    train_rows = read_rows(out / "train.csv", step)
    title = f"{config.task}: {config.reward.split(':')[0]} + {shaping}"
    png = plot_learning_curve(eval_rows, train_rows, out / "learning_curve.png", title)
    successes = [float(r["success_rate"]) for r in eval_rows]
    eval_steps = [int(float(r["step"])) for r in eval_rows]
    summary = {
        "out": str(out),
        "task": config.task,
        "reward": config.reward,
        "shaping": shaping,
        "steps": step,
        "episodes": episode_index,
        "final_success_rate": successes[-1] if successes else math.nan,
        "final_mean_return": float(eval_rows[-1]["mean_return"]) if eval_rows else math.nan,
        "success_auc": _area_under(eval_steps, successes),
        "eval_steps": eval_steps,
        "eval_success": successes,
        "learning_curve": str(png),
        "policy": str(out / "policy"),
        "seconds": round(time.perf_counter() - started, 1),
        **{k: v for k, v in info.items() if k not in ("reward", "shaping")},
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _area_under(steps: list[int], values: list[float]) -> float:
    """Mean success over the run: trapezoid area under the success curve divided by its step span."""
    if len(steps) < 2 or steps[-1] == steps[0]:
        return float(values[-1]) if values else math.nan
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def config_fields() -> list[str]:
    return [f.name for f in fields(RLConfig)]
