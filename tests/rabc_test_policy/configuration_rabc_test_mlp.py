from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.optim.optimizers import AdamConfig


@PreTrainedConfig.register_subclass("rabc_test_mlp")
@dataclass
class RabcTestMlpConfig(PreTrainedConfig):
    chunk_size: int = 4
    n_action_steps: int = 1
    hidden: int = 16
    normalization_mapping: dict = field(default_factory=lambda: {
        "STATE": NormalizationMode.MEAN_STD, "ACTION": NormalizationMode.MEAN_STD, "VISUAL": NormalizationMode.IDENTITY,
        "ENV": NormalizationMode.MEAN_STD})

    @property
    def observation_delta_indices(self):
        return None

    @property
    def action_delta_indices(self):
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self):
        return None

    def get_optimizer_preset(self):
        return AdamConfig(lr=1e-3)

    def get_scheduler_preset(self):
        return None

    def validate_features(self) -> None:
        pass
