"""Where the RL reward comes from, by name: `sparse`, `robosuite-dense`, `prm:CKPT`.

A source gives the task reward of a transition and, when it has a model, a potential Phi(s) of
each observation (from the rendered camera views). `OnlineReward` combines them per transition
with a shaping from `headway.reward.shaping.SHAPINGS`, scoring Phi exactly once per stored frame
(Phi(s') of one transition is Phi(s) of the next), and resets the model's streaming scorer at
every env reset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.policy.replay import DemoEpisode
from headway.registry import Registry
from headway.reward.loading import load_reward_model, reward_model_spec
from headway.reward.shaping import SHAPINGS, PotentialConfig, potential
from headway.sim.task import get_task


class RewardNaNError(HeadwayError):
    """A reward or potential came out NaN/inf; the message names the step."""


class RewardSource:
    """Base: the sparse task reward (1 on success), no potential, no cameras."""

    name = "sparse"
    views: tuple[str, ...] = ()
    image_size: int = 84
    has_potential = False

    def task_reward(self, env_reward: float, info: dict) -> float:
        return float(bool(info.get("success", env_reward > 0)))

    def reset(self) -> None:
        """Start a new episode (the streaming scorer forgets the last one)."""

    def potential(self, observation: dict) -> float:
        return 0.0

    def demo_task_rewards(self, episode: DemoEpisode, frames: np.ndarray) -> np.ndarray:
        return episode.success[frames].astype(np.float32)

    def demo_potentials(self, episode: DemoEpisode) -> np.ndarray:
        """Phi of every stored frame of a demonstration episode, scored once per frame."""
        return np.zeros(len(episode.obs), np.float32)


class DenseSource(RewardSource):
    """robosuite's hand-designed shaped reward (an expert's reward engineering)."""

    name = "robosuite-dense"

    def task_reward(self, env_reward: float, info: dict) -> float:
        if "robosuite_dense_reward" not in info:
            raise HeadwayError("the env gives no info['robosuite_dense_reward']; robosuite-dense runs on headway's simulator only")
        return float(info["robosuite_dense_reward"])

    def demo_task_rewards(self, episode: DemoEpisode, frames: np.ndarray) -> np.ndarray:
        if episode.dense is None:
            raise HeadwayError(
                "the demonstrations have no next.robosuite_dense_reward; use --reward sparse or prm:CKPT with them, "
                "or record demonstrations with `headway sim collect`"
            )
        return episode.dense[frames]


class ModelSource(RewardSource):
    """A process reward model's potential from the rendered views, on top of the sparse task reward.

    Phi = (1 - w) * progress + w * success probability (w = `success_weight`, 0 by default)."""

    name = "prm"
    has_potential = True

    def __init__(self, model, task: str, success_weight: float = 0.0, checkpoint: str = "") -> None:
        self.model, self.task, self.success_weight, self.checkpoint = model, task, success_weight, checkpoint
        self.mix = PotentialConfig.mix(success_weight)
        self.views = tuple(model.views)
        self.image_size = int(model.image_size)
        self.scorer = model.stream(task)

    def _phi(self, output) -> np.ndarray:
        return potential(output, self.mix, finite=False)  # the caller names the step of a NaN

    def reset(self) -> None:
        self.scorer.reset()

    def potential(self, observation: dict) -> float:
        images = {view: observation["images"][view] for view in self.views}
        return float(self._phi(self.scorer.step(images, observation.get("state")))[0])

    def demo_potentials(self, episode: DemoEpisode) -> np.ndarray:
        if not episode.images:
            raise HeadwayError("demonstration frames were not decoded; read them with the reward model's views")
        images = {view: resize_frames(episode.images[view], self.image_size) for view in self.views if view in episode.images}
        if not images:
            raise HeadwayError(
                f"the demonstrations have none of the reward model's views ({', '.join(self.views)}); "
                "record demonstrations with those cameras or use --reward sparse"
            )
        # the state as online (`potential`): a keypoint reward places the gripper by proprioception
        state = None if episode.state_dim is None else episode.obs[:, : episode.state_dim]
        return self._phi(self.model.score_episode(images, self.task, state)).astype(np.float32)


# name -> factory(argument after "name:", task, device) -> RewardSource
REWARD_SOURCES: Registry[Callable[[str | None, str, str | None], RewardSource]] = Registry("reward source")


def _no_argument(name: str, factory: Callable[[], RewardSource]) -> Callable[[str | None, str, str | None], RewardSource]:
    def build(argument: str | None, task: str, device: str | None) -> RewardSource:
        if argument:
            raise HeadwayError(f"reward source {name!r} takes no argument (got {name}:{argument})")
        return factory()

    return build


def _model_source(argument: str | None, task: str, device: str | None) -> RewardSource:
    if not argument:
        raise HeadwayError("reward source 'prm' needs a checkpoint: --reward prm:PATH (a folder from `headway reward train`)")
    if reward_model_spec(argument) is None and not Path(argument).exists():
        raise HeadwayError(f"reward model checkpoint {argument} does not exist; pass the folder written by `headway reward train`")
    model = load_reward_model(argument, device=device)
    return ModelSource(model, get_task(task).instruction, checkpoint=argument)


REWARD_SOURCES.register("sparse", _no_argument("sparse", RewardSource))
REWARD_SOURCES.register("robosuite-dense", _no_argument("robosuite-dense", DenseSource))
REWARD_SOURCES.register("prm", _model_source)


def make_reward_source(spec: str, task: str, device: str | None = None, success_weight: float = 0.0) -> RewardSource:
    """Build a source from `name` or `name:argument` (e.g. `prm:models/lift`); `success_weight` mixes
    the reward model's success probability into its potential (prm only)."""
    name, _, argument = spec.partition(":")
    if name not in REWARD_SOURCES:
        raise HeadwayError(
            f"unknown reward source {spec!r}; valid reward sources: "
            + ", ".join("prm:CKPT" if n == "prm" else n for n in sorted(REWARD_SOURCES.names()))
        )
    source = REWARD_SOURCES.get(name)(argument or None, task, device)
    if success_weight:
        if not isinstance(source, ModelSource):
            raise HeadwayError(f"a success weight mixes a reward model's success into its potential; reward source {name!r} has none (use prm:CKPT or --success-weight 0)")
        if not 0.0 <= success_weight <= 1.0:
            raise HeadwayError(f"success weight of the potential must be in [0, 1], got {success_weight}")
        source.success_weight = float(success_weight)
    return source


def check_shaping(shaping: str, source: RewardSource) -> str:
    """Validate a shaping name against the source (model shapings need a potential)."""
    SHAPINGS.get(shaping)  # unknown names list the valid ones
    if shaping != "none" and not source.has_potential:
        raise HeadwayError(
            f"shaping {shaping!r} needs a potential from a reward model, and reward source {source.name!r} has none; "
            "use --reward prm:CKPT, or --shaping none"
        )
    return shaping


def default_shaping(source: RewardSource) -> str:
    return "pbrs" if source.has_potential else "none"


class OnlineReward:
    """Per-transition reward for the learner: shaping(task reward, Phi(s), Phi(s'), gamma, terminated)."""

    def __init__(self, source: RewardSource, shaping: str, gamma: float) -> None:
        self.source, self.shaping_name, self.gamma = source, check_shaping(shaping, source), gamma
        self.shaping = SHAPINGS.get(shaping)
        self.phi = 0.0

    def reset(self, observation: dict, step: int = 0) -> float:
        """Call after env.reset: resets the scorer and scores Phi of the first frame."""
        self.source.reset()
        self.phi = self._checked(self.source.potential(observation), "potential", step) if self.source.has_potential else 0.0
        return self.phi

    def step(self, env_reward: float, next_observation: dict, terminated: bool, info: dict, step: int = 0) -> tuple[float, float, float]:
        """(shaped reward, task reward, Phi(s')) of the transition into `next_observation`."""
        task_reward = self._checked(self.source.task_reward(env_reward, info), "task reward", step)
        phi_next = self._checked(self.source.potential(next_observation), "potential", step) if self.source.has_potential else 0.0
        reward = self._checked(self.shaping(task_reward, self.phi, phi_next, self.gamma, terminated), "shaped reward", step)
        self.phi = phi_next
        return reward, task_reward, phi_next

    def demo_rewards(self, episode: DemoEpisode, frames: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """Rewards of stored demonstration transitions t -> t+1, Phi scored once per stored frame."""
        task = self.source.demo_task_rewards(episode, frames)
        phi = self.source.demo_potentials(episode) if self.source.has_potential else np.zeros(len(episode.obs), np.float32)
        if not np.isfinite(phi).all():
            frame = int(np.flatnonzero(~np.isfinite(phi))[0])
            raise RewardNaNError(f"the reward model scored NaN on demonstration episode {episode.index}, frame {frame}")
        following = np.minimum(frames + 1, len(phi) - 1)
        return np.array(
            [self.shaping(float(r), float(phi[t]), float(phi[n]), self.gamma, bool(d)) for r, t, n, d in zip(task, frames, following, terminated)],
            np.float32,
        )

    @staticmethod
    def _checked(value: float, what: str, step: int) -> float:
        value = float(value)
        if not np.isfinite(value):
            raise RewardNaNError(f"the {what} is {value} at env step {step}; the reward model produced a bad score")
        return value
