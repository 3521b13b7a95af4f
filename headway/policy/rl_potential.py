"""A reward model's potential for several envs at once: every env's new frame scored in one batch.

For the stage-aware model (`headway.reward.stage_reward.StageRewardModel`) the frames of all envs
are encoded in one forward pass and their causal windows go through the temporal model together;
it keeps, per env, what its streaming scorer keeps (the first frame's token and the recent ones),
so each env's potentials equal that scorer's. Other models are scored one env at a time through
their own streaming scorers.

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


class BatchedPotential:
    def __init__(self, model, task: str, num_envs: int, success_weight: float = 0.0, uncertainty_penalty: float = 0.0) -> None:
        self.model, self.task, self.num_envs = model, task, num_envs
        self.mix = PotentialConfig.mix(success_weight, uncertainty_penalty)
        self.views = tuple(model.views)
        self.image_size = int(model.image_size)
        self.batched = isinstance(model, StageRewardModel)
        if self.batched:
            config = model.config
            self.keep = (config.window - 1) * config.stride + 1
            self.t = [0] * num_envs
            self.first: list[torch.Tensor | None] = [None] * num_envs
            self.recent = [deque(maxlen=self.keep) for _ in range(num_envs)]
        else:
            self.scorers = [model.stream(task) for _ in range(num_envs)]

    def phi(self, output) -> np.ndarray:
        return potential(output, self.mix, finite=False)  # the runner names the step of a NaN

    def reset(self, index: int) -> None:
        if self.batched:
            self.t[index], self.first[index] = 0, None
            self.recent[index].clear()
        else:
            self.scorers[index].reset()

    @torch.no_grad()
    def score(self, indices: list[int], observations: list[dict]) -> np.ndarray:
        """Phi of each env's newest frame (one call per env step, in order)."""
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
            self.recent[i].append(token)
            index, valid = window_indices(self.t[i], config.window, config.stride)
            oldest = self.t[i] - len(self.recent[i]) + 1
            window = [self.recent[i][k - oldest] if k >= oldest else self.first[i] for k in index[0, 1:]]
            windows.append(torch.stack([self.first[i], *window]))
            valids.append(torch.from_numpy(valid[0]))
            times.append(torch.from_numpy(index[0]).float() / config.fps)
            self.t[i] += 1
        prediction = model.net.temporal_forward(
            torch.stack(windows), torch.stack(valids).to(model.device), torch.stack(times).to(model.device), [self.task] * len(indices)
        )
        return self.phi(model._output(prediction))
