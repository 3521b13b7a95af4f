"""The runner around headway/policy/rl_awr.py and headway/policy/rl_algo.py: vectorised envs, rewards, evaluation, checkpoints, logs, resume.

`run_online_rl(OnlineRLConfig, resume)` improves a headway policy (`init`) online with one of two methods:
- `awr` (default): the init BC policy's own network acts (with exploration noise) and, after every
  successful training episode, is re-cloned from its demonstrations plus its successful episodes
  (headway/policy/rl_awr.py); with a potential, a training episode whose potential stalls for
  `early_reset` steps ends early. The fine-tuned policy is saved in `out/policy` (a `headway policy bc` checkpoint).
- `ibrl`: the init policy (any format) stays frozen; the agent acts as it until its critics have warmed
  up, then executes, per state, the better by Q of the policy's action and an RL actor's (headway/policy/rl_algo.py).

Rewards (`reward`): `sparse` (1 on success), `robosuite-dense` (robosuite's shaped reward; success
is made absorbing: the success step pays r / (1 - gamma), the value of staying there, so hovering
below the success height is not worth more than succeeding), `oracle` (sparse + a potential from the
simulator's true progress) and `prm:CKPT` (sparse + a reward model's potential, all envs' frames
scored in one batch, headway/policy/rl_potential.py). `shaping`: pbrs (default with a potential), delta, none.

Evaluation: `eval_episodes` held-out seeds DEFAULT_EVAL_SEED + i, the scheme of `headway policy
eval`, deterministic actions, spread over the vectorised envs by headway/policy/evaluate.py's
`run_vec_eval_episodes` (`evaluate` below adds the reference and counts RL actions). Step 0 is
evaluated before any learning, so it is the init policy's own success on those seeds.

Layout of `out/`: config.json, checkpoints/step_N/ (state.pt, replay.npz), latest.json (the last
complete checkpoint, written last), eval.csv (one row per evaluation, with per-episode successes),
train.csv (one row per training episode: task return, learned (shaped) return, success, early reset), summary.json.
A run killed at any moment resumes from its last checkpoint with `resume=True`; episodes in flight
restart from a fresh reset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from headway.atomic import atomic_write_json, latest_checkpoint, publish_checkpoint, publish_copy, read_json
from headway.csvlog import CsvLog, read_rows
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.policy.bc import BCPolicy
from headway.policy.bc_data import load_bc_samples
from headway.policy.evaluate import DEFAULT_EVAL_SEED, check_policy_fits, run_vec_eval_episodes, summarize_episodes, training_episode_seed
from headway.policy.interface import load_policy
from headway.policy.replay import demo_transitions, read_demo_episodes
from headway.policy.reward_sources import RewardNaNError
from headway.policy.rl_algo import MAX_UTD, Agent, AgentConfig, Buffer, NStep, mixed_batch
from headway.policy.rl_awr import AWRConfig, AWRLearner, Episode
from headway.policy.rl_potential import BatchedPotential
from headway.policy.vec_env import VecEnv, VecEnvSpec
from headway.registry import Registry
from headway.reward.loading import load_reward_model, reward_model_spec
from headway.run_dir import RunDir, with_defaults
from headway.runtime import torch_threads
from headway.sim.env import VIEWS
from headway.sim.task import get_task

# method name -> loop(config, resume, on_eval, overwrite) -> summary; a new method is a loop and one line
RL_METHODS: Registry[Callable[..., dict]] = Registry("RL method")

REWARDS = ("sparse", "robosuite-dense", "oracle", "prm")
SHAPINGS = ("pbrs", "delta", "none")
TRAIN_FIELDS = ["step", "episode", "seed", "task_return", "learned_return", "success", "length", "used_rl", "seconds", "early_reset"]
EVAL_FIELDS = ["step", "success_rate", "mean_dense_return", "mean_length", "used_rl", "successes", "seconds", "env_steps_per_s", "updates_per_s"]


# settings added since older runs were written, at the values that reproduce those runs (resume and reuse)
ADDED_SETTINGS = {"awr": {"value_sees_potential": True}}


@dataclass
class OnlineRLConfig:
    task: str = "lift"
    init: Path | None = None  # a headway policy checkpoint: the reference (ibrl) or the network fine-tuned (awr)
    method: str = "awr"  # awr: fine-tune the init's own network (headway/policy/rl_awr.py); ibrl: act through it (headway/policy/rl_algo.py)
    reward: str = "sparse"  # sparse | robosuite-dense | oracle | prm:CKPT
    shaping: str | None = None  # pbrs | delta | none; None: pbrs with a potential, none otherwise
    demos: Path | None = None  # LeRobot dataset kept in replay (demo_ratio of each batch)
    demo_episodes: int | None = None
    steps: int = 15_000
    out: Path = Path("runs/rl")
    seed: int = 0
    num_envs: int = 2
    processes: bool = True  # envs in worker processes (False: in this process, for tests)
    eval_every: int = 1_000
    eval_episodes: int = 20
    batch_size: int = 256
    utd: int = 1  # gradient updates per env step
    demo_ratio: float = 0.5
    warmup_steps: int = 1_000  # env steps with the reference acting while only the critics learn (WSRL)
    actor_pretrain: int = 500  # regression steps of the RL actor onto the reference's actions at warm-up's end
    success_weight: float = 0.0
    uncertainty_penalty: float = 0.0  # Phi -= k * the reward model's ensemble uncertainty
    # prm: score (and render) every k-th frame of an episode, the potential held in between; None: the
    # model's frame stride (exact: its windows read only those frames); 1: every frame
    score_every: int | None = None
    # awr with a potential: end a training episode early (truncated, bootstrapped) once its potential has not
    # risen `early_reset_gain` above its earlier best for `early_reset` steps (a stalled attempt); 0: off;
    # None: 30 for awr with a potential, else off
    early_reset: int | None = None
    early_reset_gain: float = 0.03
    horizon: int | None = None
    agent: AgentConfig = field(default_factory=AgentConfig)
    awr: AWRConfig = field(default_factory=AWRConfig)
    threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.init = None if self.init is None else Path(self.init)
        self.demos = None if self.demos is None else Path(self.demos)
        if isinstance(self.agent, dict):
            self.agent = AgentConfig(**self.agent)
        if isinstance(self.awr, dict):
            self.awr = AWRConfig(**self.awr)
        RL_METHODS.get(self.method)  # an unknown name fails here, listing the registered methods
        get_task(self.task)
        if self.init is None:
            raise HeadwayError("online RL starts from a headway policy: pass --init POLICY (e.g. from `headway policy bc`)")
        if not (self.init / "config.json").exists():
            raise HeadwayError(f"--init {self.init} is not a headway policy checkpoint (no config.json)")
        if self.demos is not None and not (self.demos / "meta" / "info.json").exists():
            raise HeadwayError(f"--demos {self.demos} is not a LeRobot dataset (no meta/info.json)")
        name = self.reward.partition(":")[0]
        if name not in REWARDS:
            raise HeadwayError(f"unknown reward {self.reward!r}; valid: sparse, robosuite-dense, oracle, prm:CKPT")
        if name == "prm" and not self.reward.partition(":")[2]:
            raise HeadwayError("reward 'prm' needs a checkpoint: prm:PATH (a folder from `headway reward train`)")
        if self.shaping is not None and self.shaping not in SHAPINGS:
            raise HeadwayError(f"unknown shaping {self.shaping!r}; valid: {', '.join(SHAPINGS)}")
        if self.shaping not in (None, "none") and name not in ("oracle", "prm", "robosuite-dense"):
            raise HeadwayError(f"shaping {self.shaping!r} needs a potential; reward {name!r} has none (use oracle, robosuite-dense or prm:CKPT, or --shaping none)")
        if self.score_every is not None and (self.score_every < 1 or name != "prm"):
            raise HeadwayError(f"score-every {self.score_every} needs a reward model (prm:CKPT) and a value >= 1")
        if not 1 <= self.utd <= MAX_UTD:
            raise HeadwayError(f"UTD (updates per env step) must be in [1, {MAX_UTD}], got {self.utd}")
        for key in ("steps", "num_envs", "eval_every", "eval_episodes", "batch_size"):
            if getattr(self, key) < 1:
                raise HeadwayError(f"{key.replace('_', '-')} must be at least 1, got {getattr(self, key)}")
        if self.warmup_steps < 0 or self.actor_pretrain < 0:
            raise HeadwayError("warm-up steps and actor pretraining must be >= 0")
        if not 0.0 <= self.demo_ratio < 1.0:
            raise HeadwayError(f"demo ratio must be in [0, 1), got {self.demo_ratio}")
        can_reset = self.method == "awr" and self.shaping_name != "none" and name != "sparse"  # a potential to watch
        if self.early_reset is None:
            self.early_reset = 30 if can_reset else 0
        if self.early_reset < 0 or self.early_reset_gain < 0:
            raise HeadwayError(f"early reset window and gain must be >= 0, got {self.early_reset}, {self.early_reset_gain}")
        if self.early_reset and not can_reset:
            raise HeadwayError("early reset reads the potential of a training episode: it needs --method awr and a reward with a potential (oracle, prm:CKPT, or robosuite-dense with --shaping pbrs)")
        training_episode_seed(self.seed, 0)  # the seed range, checked before any work

    @property
    def reward_name(self) -> str:
        return self.reward.partition(":")[0]

    @property
    def shaping_name(self) -> str:
        return self.shaping or ("pbrs" if self.reward_name in ("oracle", "prm") else "none")

    def identity(self) -> dict:
        data = asdict(self)
        for key in ("steps", "progress", "threads", "eval_every", "processes"):
            data.pop(key)
        for key in ("out", "init", "demos"):
            data[key] = None if data[key] is None else str(data[key])
        data["agent"]["hidden"] = list(data["agent"]["hidden"])
        return data


# -- rewards ---------------------------------------------------------------------------------------
class Rewards:
    """Task reward, potential and shaping of every env's transitions; demonstration rewards likewise."""

    def __init__(self, config: OnlineRLConfig, num_envs: int, device: str = "cpu") -> None:
        self.config, self.name, self.shaping = config, config.reward_name, config.shaping_name
        self.gamma = config.awr.gamma if config.method == "awr" else config.agent.gamma
        self.potential = None
        self.views: tuple[str, ...] = ()
        self.image_size = 84
        self.stages = len(get_task(config.task).stages)
        if self.name == "prm":
            path = config.reward.partition(":")[2]
            if reward_model_spec(path) is None and not Path(path).exists():
                raise HeadwayError(f"reward model checkpoint {path} does not exist; pass the folder written by `headway reward train`")
            model = load_reward_model(path, device=device)
            missing = [v for v in model.views if v not in VIEWS]
            if missing:
                raise HeadwayError(f"the reward model reads views {', '.join(missing)} that the simulator cannot render (it has {', '.join(VIEWS)})")
            self.potential = BatchedPotential(model, get_task(config.task).instruction, num_envs, config.success_weight,
                                              config.uncertainty_penalty, config.score_every)
            self.views, self.image_size = self.potential.views, self.potential.image_size
        # robosuite-dense with a shaping: robosuite's staged dense reward of the state (in [0, 1]) is the
        # potential and the task reward is sparse success, so the optimum is success
        self.dense_potential = self.name == "robosuite-dense" and self.shaping != "none"
        self.has_potential = self.name in ("oracle", "prm") or self.dense_potential

    def task_reward(self, reward: float, terminated: bool, info: dict) -> float:
        if self.name == "robosuite-dense" and not self.dense_potential:
            dense = float(info["robosuite_dense_reward"])
            return dense / (1.0 - self.gamma) if terminated else dense  # success absorbing
        return float(bool(info["success"]))

    def potentials(self, indices: list[int], observations: list[dict], infos: list[dict], reset: bool) -> np.ndarray:
        if self.name == "oracle":
            return np.array([float(i["oracle_potential"]) for i in infos])
        if self.dense_potential:
            return np.array([float(i["robosuite_dense_reward"]) for i in infos])
        if self.name == "prm":
            if reset:
                for i in indices:
                    self.potential.reset(i)
            return self.potential.score(indices, observations)
        return np.zeros(len(indices))

    def render_flags(self, indices: list[int]) -> list[bool] | None:
        """Which envs must render their next frame: those whose potential is scored then (None: all)."""
        return None if self.potential is None else [self.potential.due(i) for i in indices]

    def shaped(self, task_reward: float, phi: float, phi_next: float, terminated: bool) -> float:
        if self.shaping == "pbrs":
            return task_reward + self.gamma * (0.0 if terminated else phi_next) - phi
        if self.shaping == "delta":
            return phi_next - phi
        return task_reward

    def demo_potentials(self, episode) -> np.ndarray:
        if self.name == "oracle":
            if episode.scene is None:
                raise HeadwayError("the demonstrations have no oracle.scene_stage / oracle.scene_tau; record them with `headway sim collect`")
            stage, tau = episode.scene
            return ((stage + tau) / self.stages).astype(np.float64)
        if self.name == "prm":
            model = self.potential.model
            images = {v: resize_frames(episode.images[v], self.image_size) for v in self.views if episode.images and v in episode.images}
            if not images:
                raise HeadwayError(f"the demonstrations have none of the reward model's views ({', '.join(self.views)})")
            state = None if episode.state_dim is None else episode.obs[:, : episode.state_dim]
            phi = self.potential.phi(model.score_episode(images, self.potential.task, state))
            every = self.potential.every
            return phi[np.arange(len(phi)) // every * every]  # held between scored frames, as online
        if self.dense_potential:  # recorded after each step: frame t + 1's value; the first frame takes the first
            dense = self._demo_dense(episode)
            return np.concatenate([dense[:1], dense])[: len(episode.obs)].astype(np.float64)
        return np.zeros(len(episode.obs))

    @staticmethod
    def _demo_dense(episode) -> np.ndarray:
        if episode.dense is None:
            raise HeadwayError("the demonstrations have no next.robosuite_dense_reward; record them with `headway sim collect`")
        return episode.dense

    def demo_task_reward(self, episode, t: int, terminated: bool) -> float:
        if self.name == "robosuite-dense" and not self.dense_potential:
            return float(self._demo_dense(episode)[t]) / (1.0 - self.gamma) if terminated else float(episode.dense[t])
        return float(episode.success[t])


def checked(value: float, what: str, step: int) -> float:
    if not np.isfinite(value):
        raise RewardNaNError(f"the {what} is {value} at env step {step}; the reward model produced a bad score")
    return float(value)


# -- references ------------------------------------------------------------------------------------
def load_references(config: OnlineRLConfig, count: int, env) -> list:
    """One frozen copy of the init policy per env (a chunking policy keeps a per-episode queue)."""
    policies = [load_policy(config.init, device="cpu") for _ in range(count)]
    check_policy_fits(policies[0], config.task, env)
    object_dim = getattr(policies[0], "object_dim", None)
    env_object = int(env.observation_space["object"].shape[0])
    if object_dim is not None and object_dim not in (0, env_object):
        raise HeadwayError(f"--init reads a {object_dim}-value object state; {config.task} gives {env_object}")
    return policies


def obs_vector(observation: dict) -> np.ndarray:
    return np.concatenate([np.asarray(observation["state"], np.float32), np.asarray(observation["object"], np.float32)])


def evaluate(agent: Agent | None, references: list, env, episodes: int, seed: int = DEFAULT_EVAL_SEED, reference_only: bool = False) -> dict:
    """Deterministic episodes on the held-out seeds seed + i, spread over the vectorised envs by
    headway/policy/evaluate.py's `run_vec_eval_episodes`, each slot's reference policy beside the agent
    (`reference_only`: the references act alone). Returns `summarize_episodes`' figures, `used_rl`
    (the fraction of steps that executed the RL actor's action) and the rows (`per_episode`)."""

    def act(slots: list[int], observations: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        obs = np.stack([obs_vector(o) for o in observations])
        ref = np.stack([np.asarray(references[s].act(o), np.float32) for s, o in zip(slots, observations)])
        actions, used = (ref, np.zeros(len(slots), bool)) if reference_only else agent.act(obs, ref, explore=False)
        return actions, {"used_rl": used}

    rows = run_vec_eval_episodes(act, env, episodes, seed, start=lambda slot: references[slot].reset())
    return {**summarize_episodes(rows, counters=("used_rl",)), "per_episode": rows}


# -- demonstrations ---------------------------------------------------------------------------------
def demo_buffer(config: OnlineRLConfig, rewards: Rewards, reference, obs_dim: int, action_dim: int) -> tuple[Buffer, np.ndarray, np.ndarray]:
    """n-step demonstration transitions with this run's rewards, and the reference's action at every
    demonstration state (it acts through each episode in order, as online). Also returns all demo
    states and their reference actions (for normalisation and the actor's first fit)."""
    views = tuple(dict.fromkeys(rewards.views + tuple(reference.views)))
    episodes = read_demo_episodes(config.demos, views, config.demo_episodes)
    if episodes[0].obs.shape[1] != obs_dim or episodes[0].action.shape[1] != action_dim:
        raise HeadwayError(f"--demos {config.demos} has state+object {episodes[0].obs.shape[1]} / action {episodes[0].action.shape[1]}; {config.task} needs {obs_dim} / {action_dim}")
    rows, states, refs = [], [], []
    for episode in episodes:
        phi = rewards.demo_potentials(episode)
        if not np.isfinite(phi).all():
            raise RewardNaNError(f"the reward model scored NaN on demonstration episode {episode.index}, frame {int(np.flatnonzero(~np.isfinite(phi))[0])}")
        reference.reset()
        ref = []
        for t in range(len(episode.obs)):
            observation = {"state": episode.obs[t, : episode.state_dim], "object": episode.obs[t, episode.state_dim :], "images": {v: f[t] for v, f in (episode.images or {}).items()}}
            ref.append(np.clip(np.asarray(reference.act(observation), np.float32), -1, 1))
        ref = np.stack(ref)
        states.append(episode.obs)
        refs.append(ref)
        frames, terminal = demo_transitions(episode)
        nstep = NStep(config.agent.n_step, config.agent.gamma)
        for t, done in zip(frames, terminal):
            n = min(t + 1, len(episode.obs) - 1)
            step = {
                "obs": episode.obs[t], "action": np.clip(episode.action[t], -1, 1), "next_obs": episode.obs[n],
                "reward": rewards.shaped(rewards.demo_task_reward(episode, t, bool(done)), float(phi[t]), float(phi[n]), bool(done)),
                "ref_action": ref[t], "next_ref_action": ref[n], "phi": float(phi[t]), "next_phi": 0.0 if done else float(phi[n]),
            }
            rows += nstep.push(step, bool(done), t == frames[-1])
    buffer = Buffer(len(rows), obs_dim, action_dim)
    for row in rows:
        buffer.add(row)
    return buffer, np.concatenate(states), np.concatenate(refs)


# -- logs and checkpoints ---------------------------------------------------------------------------
def save_checkpoint(out: Path, step: int, state: dict, online: Buffer) -> None:
    def write(folder: Path) -> None:
        torch.save(state, folder / "state.pt")
        np.savez(folder / "replay.npz", **online.state())

    publish_checkpoint(out, step, write, keep=2)


def load_checkpoint_arrays(out: Path) -> tuple[dict, dict] | None:
    """The latest checkpoint's state and its replay arrays (the awr loop's episodes), or None before the first."""
    folder = latest_checkpoint(out)
    if folder is None:
        return None
    state = torch.load(folder / "state.pt", weights_only=False)
    with np.load(folder / "replay.npz") as data:
        return state, {k: data[k] for k in data.files}


def load_checkpoint(out: Path) -> tuple[dict, Buffer] | None:
    """The ibrl loop's: the latest checkpoint's state and its online replay buffer."""
    checkpoint = load_checkpoint_arrays(out)
    return None if checkpoint is None else (checkpoint[0], Buffer.from_state(checkpoint[1]))


def saved_identity(out: Path) -> dict:
    """A run folder's settings (`config.json`), with those added since it was written at their old values."""
    return with_defaults(ADDED_SETTINGS, read_json(Path(out) / "config.json"))


def open_run(config: OnlineRLConfig, resume: bool, overwrite: bool = False) -> Path:
    """Check `config.out` against this run (headway.run_dir) and prepare it."""
    RunDir(config.out, job="RL run", identity=config.identity(), identity_file="config.json", defaults=ADDED_SETTINGS).open(resume, overwrite)
    return config.out


class RunLog:
    """A run's train.csv and eval.csv (rewritten up to the checkpoint's step on resume), its
    throughput counters and its progress lines; `on_eval(step, result)` is called after each evaluation."""

    def __init__(self, config: OnlineRLConfig, step: int, resumed: bool, started: float, on_eval=None) -> None:
        out, keep = config.out, step if resumed else -1
        self.config, self.started, self.on_eval = config, started, on_eval
        self.train = CsvLog(out / "train.csv", TRAIN_FIELDS, read_rows(out / "train.csv", keep))
        self.eval_rows = read_rows(out / "eval.csv", keep)
        self.eval = CsvLog(out / "eval.csv", EVAL_FIELDS, self.eval_rows)
        self.timing = {"env_seconds": 0.0, "update_seconds": 0.0, "env_steps": 0, "updates": 0}

    def evaluation(self, step: int, result: dict, used_rl: float, note: str = "") -> None:
        timing, config = self.timing, self.config
        row = {
            "step": step, **{k: result[k] for k in ("success_rate", "mean_dense_return", "mean_length")}, "used_rl": used_rl,
            "successes": "".join(map(str, result["successes"])), "seconds": round(time.perf_counter() - self.started, 1),
            "env_steps_per_s": round(timing["env_steps"] / max(timing["env_seconds"], 1e-9), 1),
            "updates_per_s": round(timing["updates"] / max(timing["update_seconds"], 1e-9), 1),
        }
        self.eval.write(row)
        self.eval_rows.append(row)
        if self.on_eval is not None:
            self.on_eval(step, result)
        if config.progress:
            print(f"[rl {config.method} {config.task} {config.reward_name}+{config.shaping_name} seed {config.seed}] step {step}: success {result['success_rate']:.2f}"
                  f"{note}, {row['env_steps_per_s']} env steps/s, {row['updates_per_s']} updates/s", flush=True)

    def close(self) -> None:
        self.train.close()
        self.eval.close()


def stopped_by_nan(error: RewardNaNError, last_good: int, out: Path) -> RewardNaNError:
    """The error a NaN reward stops a run with, naming the checkpoint kept (step -1: none yet)."""
    kept = f"the last good checkpoint (step {last_good}) is kept in {out}" if last_good >= 0 else "no checkpoint was written yet"
    return RewardNaNError(f"{error}; training stopped, {kept}. Fix the reward model, then rerun with --resume")


def training_outcomes(train_rows: list[dict]) -> dict:
    """How many training episodes a run finished and how many succeeded (train.csv rows)."""
    return {"training_episodes": len(train_rows), "training_successes": sum(float(r["success"]) > 0 for r in train_rows)}


def write_summary(config: OnlineRLConfig, step: int, eval_rows: list[dict], started: float, info: dict) -> dict:
    """summary.json from the logs: curve, start and final success, throughput, training episodes and successes, hacking flag."""
    out = config.out
    curve_steps = [int(float(r["step"])) for r in eval_rows]
    summary = {
        "out": str(out), "task": config.task, "method": config.method, "reward": config.reward, "shaping": config.shaping_name, "seed": config.seed, "steps": step,
        "eval_episodes": config.eval_episodes, "eval_steps": curve_steps,
        "eval_success": [float(r["success_rate"]) for r in eval_rows],
        "eval_successes": [[int(c) for c in r["successes"]] for r in eval_rows],
        "start_success": float(eval_rows[0]["success_rate"]),
        "final_success": float(eval_rows[-1]["success_rate"]),
        "env_steps_per_s": float(eval_rows[-1]["env_steps_per_s"]), "updates_per_s": float(eval_rows[-1]["updates_per_s"]),
        "seconds": round(time.perf_counter() - started, 1), **info,
    }
    train_rows = read_rows(out / "train.csv", step)
    summary.update(training_outcomes(train_rows))
    summary["reward_hacking_flag"] = hacking_flag(train_rows, summary["eval_success"])
    atomic_write_json(out / "summary.json", summary)
    return summary


# -- the loop ----------------------------------------------------------------------------------------
def run_online_rl(config: OnlineRLConfig, resume: bool = False, on_eval=None, overwrite: bool = False) -> dict:
    """Train (or continue, with `resume`; or start over, with `overwrite`) the run in `config.out`;
    `on_eval(step, result)` is called after each evaluation."""
    with torch_threads(config.threads):
        return RL_METHODS.get(config.method)(config, resume, on_eval, overwrite)


def _run_ibrl(config: OnlineRLConfig, resume: bool, on_eval, overwrite: bool) -> dict:
    """Method ibrl: act through the frozen init policy, an RL actor chosen by the critic ensemble."""
    started = time.perf_counter()
    out = open_run(config, resume, overwrite)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    rewards = Rewards(config, config.num_envs)
    policy_views = tuple(load_policy(config.init).views)
    train_views = tuple(dict.fromkeys(rewards.views + policy_views))
    image_size = rewards.image_size if rewards.views else getattr(load_policy(config.init), "image_size", None) or 84
    env = VecEnv(VecEnvSpec(config.task, train_views, image_size, config.horizon), config.num_envs, config.processes)
    eval_env = VecEnv(VecEnvSpec(config.task, policy_views, image_size, config.horizon), config.num_envs, config.processes)
    logs, last_good = None, -1
    try:
        references = load_references(config, config.num_envs, env)
        eval_references = load_references(config, config.num_envs, env)
        obs_dim = int(env.observation_space["state"].shape[0] + env.observation_space["object"].shape[0])
        action_dim = int(env.action_space.shape[0])
        if not (np.allclose(env.action_space.low, -1) and np.allclose(env.action_space.high, 1)):
            raise HeadwayError(f"the agent acts in [-1, 1]; this env's action space is {env.action_space}")
        agent = Agent(obs_dim, action_dim, config.agent, seed=config.seed)
        demos, demo_states, demo_refs = (None, None, None)
        if config.demos is not None:
            demos, demo_states, demo_refs = demo_buffer(config, rewards, references[0], obs_dim, action_dim)
        checkpoint = load_checkpoint(out) if resume else None
        step = episode_counter = 0
        info: dict = {}
        if checkpoint is not None:
            state, online = checkpoint
            agent.load_state_dict(state["agent"])
            rng.bit_generator.state = state["rng"]
            step, episode_counter, info = state["step"], state["episodes"], state["info"]
            started -= state["seconds"]
        else:
            online = Buffer(config.steps + config.num_envs * (config.agent.n_step + 1), obs_dim, action_dim)
            first = [obs_vector(o) for o, _ in env.reset(list(range(config.num_envs)), [training_episode_seed(config.seed, 99_999 - i) for i in range(config.num_envs)])]
            agent.normaliser.fit(demo_states if demo_states is not None else np.stack(first))
        last_good = step if checkpoint is not None else -1
        logs = RunLog(config, step, checkpoint is not None, started, on_eval)
        timing = logs.timing

        def do_eval() -> dict:
            result = evaluate(agent, eval_references, eval_env, config.eval_episodes)
            logs.evaluation(step, result, result["used_rl"], f" (RL action {100 * result['used_rl']:.0f}% of steps)")
            return result

        def checkpoint_now() -> None:
            state = {"agent": agent.state_dict(), "rng": rng.bit_generator.state, "step": step, "episodes": episode_counter, "info": info, "seconds": time.perf_counter() - started}
            save_checkpoint(out, step, state, online)

        if step == 0:
            info["start_success"] = do_eval()["success_rate"]
            checkpoint_now()
            last_good = 0
        # start every env's episode
        slots = list(range(config.num_envs))
        seeds = [training_episode_seed(config.seed, episode_counter + i) for i in slots]
        resets = env.reset(slots, seeds)
        episode_counter += config.num_envs
        observations = [o for o, _ in resets]
        for r in references:
            r.reset()
        phis = rewards.potentials(slots, observations, [i for _, i in resets], reset=True)
        phis = np.array([checked(p, "potential", step) for p in phis])
        refs = np.stack([np.clip(np.asarray(r.act(o), np.float32), -1, 1) for r, o in zip(references, observations)])
        nsteps = [NStep(config.agent.n_step, config.agent.gamma) for _ in slots]
        stats = [{"seed": s, "task": 0.0, "learned": 0.0, "success": False, "length": 0, "rl": 0} for s in seeds]
        next_eval = (step // config.eval_every + 1) * config.eval_every
        pretrained = agent.actor_started

        while step < config.steps:
            obs = np.stack([obs_vector(o) for o in observations])
            actions, used = agent.act(obs, refs, explore=True, rng=rng)
            t0 = time.perf_counter()
            results = env.step(actions, render=None if policy_views else rewards.render_flags(slots))  # a camera policy sees every frame
            timing["env_seconds"] += time.perf_counter() - t0
            timing["env_steps"] += len(results)
            next_obs = [r[0] for r in results]
            infos = [r[4] for r in results]
            phi_next = np.array([checked(p, "potential", step + 1) for p in rewards.potentials(slots, next_obs, infos, reset=False)])
            next_refs = np.stack([np.clip(np.asarray(r.act(o), np.float32), -1, 1) for r, o in zip(references, next_obs)])
            done_slots = []
            for i, (o2, _, terminated, truncated, inf) in enumerate(results):
                task_reward = checked(rewards.task_reward(0.0, terminated, inf), "task reward", step + 1)
                reward = checked(rewards.shaped(task_reward, float(phis[i]), float(phi_next[i]), terminated), "shaped reward", step + 1)
                row = {"obs": obs[i], "action": actions[i], "reward": reward, "next_obs": obs_vector(o2), "ref_action": refs[i], "next_ref_action": next_refs[i],
                       "phi": float(phis[i]), "next_phi": 0.0 if terminated else float(phi_next[i])}
                for transition in nsteps[i].push(row, terminated, truncated):
                    online.add(transition)
                s = stats[i]
                s["task"] += task_reward
                s["learned"] += reward
                s["success"] = s["success"] or inf["success"]
                s["length"] += 1
                s["rl"] += int(used[i])
                if terminated or truncated:
                    done_slots.append(i)
            step += len(results)
            observations, refs, phis = next_obs, next_refs, phi_next
            # learning: critics from the start, the actor after warm-up
            if len(online) + (len(demos) if demos is not None else 0) >= config.batch_size:
                if step >= config.warmup_steps and not pretrained:
                    pretrained = True
                    if config.actor_pretrain and config.agent.residual == 0:  # a residual starts at exactly 0 already
                        states = np.concatenate([online.data["obs"][: len(online)]] + ([demo_states] if demo_states is not None else []))
                        targets = np.concatenate([online.data["ref_action"][: len(online)]] + ([demo_refs] if demo_refs is not None else []))
                        info["actor_pretrain_loss"] = agent.pretrain_actor(states, targets, config.actor_pretrain, config.batch_size, rng)
                t0 = time.perf_counter()
                for _ in range(config.utd * len(results)):
                    batch = mixed_batch(online, demos, config.batch_size, rng, config.demo_ratio, agent.device)
                    agent.update(batch, train_actor=pretrained)
                timing["update_seconds"] += time.perf_counter() - t0
                timing["updates"] += config.utd * len(results)
            if done_slots:
                new_seeds = [training_episode_seed(config.seed, episode_counter + k) for k in range(len(done_slots))]
                episode_counter += len(done_slots)
                for i in done_slots:
                    s = stats[i]
                    logs.train.write({"step": step, "episode": episode_counter, "seed": s["seed"], "task_return": round(s["task"], 4), "learned_return": round(s["learned"], 4),
                                     "success": int(s["success"]), "length": s["length"], "used_rl": round(s["rl"] / max(1, s["length"]), 3), "seconds": round(time.perf_counter() - started, 1),
                                     "early_reset": 0})
                resets = env.reset(done_slots, new_seeds)
                new_phi = rewards.potentials(done_slots, [o for o, _ in resets], [i for _, i in resets], reset=True)
                for k, (i, (o, _)) in enumerate(zip(done_slots, resets)):
                    references[i].reset()
                    observations[i] = o
                    phis[i] = checked(float(new_phi[k]), "potential", step)
                    refs[i] = np.clip(np.asarray(references[i].act(o), np.float32), -1, 1)
                    nsteps[i].clear()
                    stats[i] = {"seed": new_seeds[k], "task": 0.0, "learned": 0.0, "success": False, "length": 0, "rl": 0}
            if step >= next_eval or step >= config.steps:
                do_eval()
                checkpoint_now()
                last_good = step
                next_eval = (step // config.eval_every + 1) * config.eval_every
    except RewardNaNError as error:
        raise stopped_by_nan(error, last_good, out) from None
    finally:
        if logs is not None:
            logs.close()
        env.close()
        eval_env.close()

    return write_summary(config, step, logs.eval_rows, started, info)


def hacking_flag(train_rows: list[dict], eval_success: list[float]) -> bool:
    """True when the learned return of training episodes rises (last third vs first third) while
    the evaluated true success falls by more than 0.1 from the start."""
    if len(train_rows) < 6 or len(eval_success) < 2:
        return False
    learned = np.array([float(r["learned_return"]) for r in train_rows])
    third = len(learned) // 3
    return bool(learned[-third:].mean() > learned[:third].mean() and eval_success[-1] < eval_success[0] - 0.1)


def stalled(phi: list[float], window: int, gain: float) -> bool:
    """True when the last `window` potentials never rose `gain` above the best one before them (window 0: never)."""
    if window <= 0 or len(phi) <= window:
        return False
    return max(phi[-window:]) < max(phi[:-window]) + gain


def ar1_noise(previous: np.ndarray, draw: np.ndarray, rho: float) -> np.ndarray:
    """The next exploration noise of an AR(1) process with the per-step std of `draw`: white when rho = 0,
    otherwise each perturbation lingers about 1 / (1 - rho) steps (rho = 0 returns `draw` itself)."""
    if rho == 0.0:
        return draw
    return rho * previous + np.sqrt(1.0 - rho * rho) * draw


# -- the AWR loop: the init policy's own network acts and learns (headway/policy/rl_awr.py) --------------------
def awr_anchor(policy, config: OnlineRLConfig):
    """The demonstrations the init policy was cloned from (its checkpoint names them), as BC samples;
    `config.demos` instead when the checkpoint does not say. The anchor adds no new demonstrations."""
    train = policy.meta.get("train", {})
    named = bool(train.get("dataset")) and train.get("episode_ids") is not None
    dataset, episodes = (Path(train["dataset"]), train["episode_ids"]) if named else (config.demos, None)
    if dataset is None or not (dataset / "meta" / "info.json").exists():
        return None
    return load_bc_samples(dataset, chunk=policy.chunk, use_object_state=policy.object_dim > 0, episodes=episodes, progress=False)


def _run_awr(config: OnlineRLConfig, resume: bool, on_eval, overwrite: bool) -> dict:
    """Method awr: noisy episodes of the current policy, an AWR update after each."""
    started = time.perf_counter()
    out = open_run(config, resume, overwrite)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    init = load_policy(config.init, device="cpu")
    if not isinstance(init, BCPolicy):
        raise HeadwayError(f"method awr fine-tunes a BC policy's network; {config.init} is not a `headway policy bc` checkpoint (use --method ibrl to act through any policy)")
    if init.views:
        raise HeadwayError(f"method awr fine-tunes state-based BC policies; {config.init} reads cameras {list(init.views)} (use --method ibrl)")
    rewards = Rewards(config, config.num_envs)
    env = VecEnv(VecEnvSpec(config.task, rewards.views, rewards.image_size, config.horizon), config.num_envs, config.processes)
    eval_env = VecEnv(VecEnvSpec(config.task, (), 84, config.horizon), config.num_envs, config.processes)
    logs, last_good = None, -1
    try:
        check_policy_fits(init, config.task, env)
        net = init.net
        actors = [BCPolicy(net, init.meta) for _ in range(config.num_envs)]  # one action queue per env, one network
        evaluators = [BCPolicy(net, init.meta) for _ in range(config.num_envs)]
        obs_dim = int(env.observation_space["state"].shape[0] + env.observation_space["object"].shape[0])
        learner = AWRLearner(net, obs_dim, config.awr, awr_anchor(init, config) if config.awr.demo_ratio > 0 or config.awr.refit_every else None, seed=config.seed)
        checkpoint = load_checkpoint_arrays(out) if resume else None
        step = episode_counter = starts = 0  # episodes begun; starts drawn (fewer when failed starts are retried)
        info: dict = {"method": "awr"}
        retry: dict[int, tuple[int, int]] = {}  # env slot -> (the seed of its last failed start, tries of it left)
        if checkpoint is not None:
            state, episodes = checkpoint
            learner.load_state_dict(state["learner"])
            learner.load_episodes(episodes)
            rng.bit_generator.state = state["rng"]
            step, episode_counter, info = state["step"], state["episodes"], state["info"]
            started -= state["seconds"]
            starts, retry = state.get("starts", episode_counter), state.get("retry", {})
        else:
            demo_obs = [e.obs for e in read_demo_episodes(config.demos)] if config.demos is not None else []
            first = [obs_vector(o) for o, _ in env.reset(list(range(config.num_envs)), [training_episode_seed(config.seed, 99_999 - i) for i in range(config.num_envs)])]
            learner.fit_normaliser(np.concatenate(demo_obs) if demo_obs else np.stack(first))
        last_good = step if checkpoint is not None else -1
        logs = RunLog(config, step, checkpoint is not None, started, on_eval)
        timing = logs.timing

        def do_eval() -> dict:
            result = evaluate(None, evaluators, eval_env, config.eval_episodes, reference_only=True)
            logs.evaluation(step, result, 1.0 if step else 0.0)
            return result

        def checkpoint_now() -> None:
            state = {"learner": learner.state_dict(), "rng": rng.bit_generator.state, "step": step, "episodes": episode_counter, "info": info,
                     "seconds": time.perf_counter() - started, "starts": starts, "retry": dict(retry)}

            def write(folder: Path) -> None:
                torch.save(state, folder / "state.pt")
                np.savez(folder / "replay.npz", **learner.episodes_state())
                BCPolicy(net, {**init.meta, "finetuned": {"method": "awr", "reward": config.reward, "shaping": config.shaping_name, "env_steps": step}}).save(folder / "policy")

            publish_checkpoint(out, step, write, keep=2)

        if step == 0:
            info["start_success"] = do_eval()["success_rate"]
            checkpoint_now()
            last_good = 0
        slots = list(range(config.num_envs))

        def begin(indices: list[int]) -> list[dict]:
            nonlocal episode_counter, starts
            seeds = []
            for i in indices:  # a slot with a failed start to try again takes that start; others draw the next one
                if i in retry:
                    seeds.append(retry[i][0])
                else:
                    seeds.append(training_episode_seed(config.seed, starts))
                    starts += 1
            episode_counter += len(indices)
            resets = env.reset(indices, seeds)
            phis = rewards.potentials(indices, [o for o, _ in resets], [i for _, i in resets], reset=True)
            runs = []
            for k, (i, (o, _)) in enumerate(zip(indices, resets)):
                actors[i].reset()
                runs.append({"seed": seeds[k], "obs": o, "obs_v": [obs_vector(o)], "phi": [checked(float(phis[k]), "potential", step)],
                             "actions": [], "rewards": [], "task": 0.0, "success": False, "noise": np.zeros(init.action_dim)})
            return runs

        runs = begin(slots)
        next_eval = (step // config.eval_every + 1) * config.eval_every
        while step < config.steps:
            actions = []
            for i in slots:
                runs[i]["noise"] = ar1_noise(runs[i]["noise"], rng.normal(0.0, config.awr.noise, size=init.action_dim), config.awr.noise_correlation)
                actions.append(np.clip(actors[i].act(runs[i]["obs"]) + runs[i]["noise"], -1.0, 1.0).astype(np.float32))
            t0 = time.perf_counter()
            results = env.step(np.stack(actions), render=rewards.render_flags(slots))
            timing["env_seconds"] += time.perf_counter() - t0
            timing["env_steps"] += len(results)
            step += len(results)
            phi_next = rewards.potentials(slots, [r[0] for r in results], [r[4] for r in results], reset=False)
            done = []
            for i, (o2, _, terminated, truncated, inf) in enumerate(results):
                run = runs[i]
                task_reward = checked(rewards.task_reward(0.0, terminated, inf), "task reward", step)
                phi2 = checked(float(phi_next[i]), "potential", step)
                run["rewards"].append(checked(rewards.shaped(task_reward, run["phi"][-1], phi2, terminated), "shaped reward", step))
                run["actions"].append(actions[i])
                run["obs"] = o2
                run["obs_v"].append(obs_vector(o2))
                run["phi"].append(phi2)
                run["task"] += task_reward
                run["success"] = run["success"] or bool(inf["success"])
                run["early"] = not (terminated or truncated) and stalled(run["phi"], config.early_reset, config.early_reset_gain)
                if terminated or truncated or run["early"]:
                    done.append(i)
                    run["terminated"] = bool(terminated)
            if done:
                t0 = time.perf_counter()
                for i in done:
                    run = runs[i]
                    left = retry.pop(i)[1] if i in retry else config.awr.retries
                    if not run["success"] and left > 0:
                        retry[i] = (run["seed"], left - 1)
                    learner.add_episode(Episode(
                        obs=np.stack(run["obs_v"]).astype(np.float32),
                        phi=np.asarray(run["phi"], np.float64), actions=np.stack(run["actions"]), rewards=np.asarray(run["rewards"], np.float64),
                        terminated=run["terminated"], success=run["success"],
                    ))
                    timing["updates"] += learner.update(config.awr.updates_per_episode)["policy_steps"]
                    logs.train.write({"step": step, "episode": episode_counter, "seed": run["seed"], "task_return": round(run["task"], 4),
                                     "learned_return": round(float(np.sum(run["rewards"])), 4), "success": int(run["success"]),
                                     "length": len(run["actions"]), "used_rl": 1.0, "seconds": round(time.perf_counter() - started, 1), "early_reset": int(run["early"])})
                timing["update_seconds"] += time.perf_counter() - t0
                for i, run in zip(done, begin(done)):
                    runs[i] = run
            if step >= next_eval or step >= config.steps:
                do_eval()
                checkpoint_now()
                last_good = step
                next_eval = (step // config.eval_every + 1) * config.eval_every
        info.update({f"last_{k}": v for k, v in learner.last.items()})
    except RewardNaNError as error:
        raise stopped_by_nan(error, last_good, out) from None
    finally:
        if logs is not None:
            logs.close()
        env.close()
        eval_env.close()
    publish_copy(latest_checkpoint(out) / "policy", out / "policy")
    return write_summary(config, step, logs.eval_rows, started, info)


RL_METHODS.register("ibrl", _run_ibrl)
RL_METHODS.register("awr", _run_awr)
