import torch
from torch import nn

from lerobot.policies.pretrained import PreTrainedPolicy

from .configuration_rabc_test_mlp import RabcTestMlpConfig


class RabcTestMlpPolicy(PreTrainedPolicy):
    config_class = RabcTestMlpConfig
    name = "rabc_test_mlp"

    def __init__(self, config: RabcTestMlpConfig, **kwargs) -> None:
        super().__init__(config)
        state_dim = config.input_features["observation.state"].shape[0]
        self.action_dim = config.output_features["action"].shape[0]
        self.net = nn.Sequential(nn.Linear(state_dim, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, config.chunk_size * self.action_dim))

    def get_optim_params(self):
        return self.parameters()

    def reset(self) -> None:
        pass

    def predict_action_chunk(self, batch, **kwargs):
        return self.net(batch["observation.state"]).view(-1, self.config.chunk_size, self.action_dim)

    def select_action(self, batch, **kwargs):
        return self.predict_action_chunk(batch)[:, 0]

    def forward(self, batch, reduction: str = "mean"):
        error = (self.predict_action_chunk(batch) - batch["action"]) ** 2
        per_sample = error.mean(dim=(1, 2))
        return (per_sample if reduction == "none" else per_sample.mean()), {}
