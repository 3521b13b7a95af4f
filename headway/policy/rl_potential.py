"""A reward model's potential for several envs at once: every env's new frame scored in one batch.

For the stage-aware model (`headway.reward.stage_reward.StageRewardModel`) the frames of all envs
are encoded in one forward pass and their causal windows go through the temporal model together;
it keeps, per env, what its streaming scorer keeps (the first frame's token and the recent ones),
so each env's potentials equal that scorer's. Other models are scored one env at a time through
their own streaming scorers.

`every` k > 1 scores only frames 0, k, 2k, ... of each episode and holds the potential in between, so
the envs render only those frames. With k dividing the model's frame stride, the scored frames' windows
read only scored frames, so their potentials equal every-frame scoring's exactly; the default is the
stride itself (the stage model reads every `stride`-th frame), which cuts rendering by that factor.

Phi = (1 - w) progress + w success - k * uncertainty, assembled by `PotentialConfig.mix` and `potential`
(headway/reward/shaping.py), the same code that builds the labels' potential.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from headway.errors import HeadwayError
from headway.reward.shaping import PotentialConfig, potential
from headway.reward.stage_model import window_indices
from headway.reward.stage_reward import StageRewardModel


def default_score_every(model) -> int:
    """The stage model's frame stride (its windows read every stride-th frame); 1 for other models."""
    return int(model.config.stride) if isinstance(model, StageRewardModel) else 1


class BatchedPotential:
    def __init__(self, model, task: str, num_envs: int, success_weight: float = 0.0, uncertainty_penalty: float = 0.0,
                 every: int | None = None) -> None:
        self.model, self.task, self.num_envs = model, task, num_envs
        self.mix = PotentialConfig.mix(success_weight, uncertainty_penalty)
        self.views = tuple(model.views)
        self.image_size = int(model.image_size)
        self.batched = isinstance(model, StageRewardModel)
        self.every = default_score_every(model) if every is None else int(every)
        if self.every < 1:
            raise HeadwayError(f"the potential must be scored every k >= 1 frames, got {self.every}")
        if self.every > 1 and not (self.batched and model.config.stride % self.every == 0):
            stride = model.config.stride if self.batched else 1
            raise HeadwayError(f"scoring every {self.every} frames needs a stage reward model whose frame stride it divides "
                               f"(this model reads every {stride}th frame); use a divisor of {stride}")
        self.t = [0] * num_envs
        self.held = np.zeros(num_envs)
        if self.batched:
            config = model.config
            self.keep = (config.window - 1) * config.stride // self.every + 1  # scored frames the window reaches back
            self.first: list[torch.Tensor | None] = [None] * num_envs
            self.recent = [deque(maxlen=self.keep) for _ in range(num_envs)]
        else:
            self.scorers = [model.stream(task) for _ in range(num_envs)]

    def due(self, index: int) -> bool:
        """Whether env `index`'s next frame is scored (and so must be rendered)."""
        return self.t[index] % self.every == 0

    def phi(self, output) -> np.ndarray:
        return potential(output, self.mix, finite=False)  # the runner names the step of a NaN

    def reset(self, index: int) -> None:
        self.t[index] = 0
        if self.batched:
            self.first[index] = None
            self.recent[index].clear()
        else:
            self.scorers[index].reset()

    def score(self, indices: list[int], observations: list[dict]) -> np.ndarray:
        """Phi of each env's newest frame (one call per env step, in order): scored when due, else held."""
        due = [k for k, i in enumerate(indices) if self.due(i)]
        if due:
            self.held[[indices[k] for k in due]] = self._score([indices[k] for k in due], [observations[k] for k in due])
        for i in indices:
            self.t[i] += 1
        return self.held[indices]  # fancy indexing: a copy

    @torch.no_grad()
    def _score(self, indices: list[int], observations: list[dict]) -> np.ndarray:
        for view in self.views:
            for observation in observations:
                if view not in observation["images"]:
                    raise HeadwayError(f"the observation has no {view!r} image; the reward model needs views {', '.join(self.views)}")
        if not self.batched:
            return np.array(
                [self.phi(self.scorers[i].step({v: o["images"][v] for v in self.views}, o.get("state")))[0] for i, o in zip(indices, observations)]
            )
        model, config = self.model, self.model.config
        images = {v: np.stack([o["images"][v] for o in observations]) for v in self.views}
        batch, present = model._view_tensor(images, 0, len(observations))
        tokens = model.net.frame_tokens(model.net.view_features(batch), present)
        windows, valids, times = [], [], []
        for row, i in enumerate(indices):
            token = tokens[row]
            if self.first[i] is None:
                self.first[i] = token
            self.recent[i].append(token)  # the scored frames t, t - every, ...
            index, valid = window_indices(self.t[i], config.window, config.stride)
            newest = self.t[i] // self.every
            oldest = newest - len(self.recent[i]) + 1
            # frame k's token is the (k / every)-th scored one; slots before the start hold the first frame
            window = [self.recent[i][k // self.every - oldest] if k // self.every >= oldest else self.first[i] for k in index[0, 1:]]
            windows.append(torch.stack([self.first[i], *window]))
            valids.append(torch.from_numpy(valid[0]))
            times.append(torch.from_numpy(index[0]).float() / config.fps)
        prediction = model.net.temporal_forward(
            torch.stack(windows), torch.stack(valids).to(model.device), torch.stack(times).to(model.device), [self.task] * len(indices)
        )
        return self.phi(model._output(prediction))
