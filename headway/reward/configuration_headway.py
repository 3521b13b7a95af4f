"""headway's reward models as a lerobot reward model: the `RewardModelConfig` registered as `headway`.

lerobot's factory finds the model class in `modeling_headway` and the processors in `processor_headway`
by its naming convention. `import headway` registers this config once lerobot's reward configs are
imported (see `headway/__init__.py`); lerobot's CLIs load it with `--reward_model.discover_packages_path=headway`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs.rewards import RewardModelConfig

from headway.checkpoint import read_config
from headway.errors import HeadwayError

# A delta far before any episode start: lerobot clamps it to the episode's first frame, the anchor
# slot of headway's causal window (its `_is_pad` flag is True and ignored for that slot).
FIRST_FRAME_DELTA = -1_000_000
SUPPORTED_FORMATS = ("headway.stage_reward",)


@RewardModelConfig.register_subclass("headway")
@dataclass
class HeadwayConfig(RewardModelConfig):
    """A headway checkpoint (`pretrained_path`) scored on lerobot batches.

    camera_keys maps the model's views to the dataset's camera keys; by default view `v` is read
    from `observation.images.v`. `task` is used when a batch carries no `task` strings.
    """

    camera_keys: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    # read from the checkpoint; kept here so the config alone tells the dataset which frames to fetch
    views: list[str] = field(default_factory=list)
    window: int = 0
    stride: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrained_path:
            fix = "pass the folder written by `headway reward train`"
            meta = read_config(self.pretrained_path, "headway reward model", fix)
            if meta.get("format") not in SUPPORTED_FORMATS:
                raise HeadwayError(
                    f"{self.pretrained_path} is a {meta.get('format') or meta.get('type')!r} checkpoint; lerobot's `headway` reward type "
                    f"takes {', '.join(SUPPORTED_FORMATS)} checkpoints ({fix})"
                )
            model = meta["model"]
            self.views, self.window, self.stride = list(model["views"]), int(model["window"]), int(model.get("stride", 1))
        unknown = sorted(set(self.camera_keys) - set(self.views)) if self.views else []
        if unknown:
            raise HeadwayError(f"camera_keys name views {unknown} that the model does not have; its views: {self.views}")

    def camera_key(self, view: str) -> str:
        return self.camera_keys.get(view, f"observation.images.{view}")

    @property
    def observation_delta_indices(self) -> list[int] | None:
        """The episode's first frame, then the recent window ending at the scored frame (causal)."""
        if not self.window:
            return None
        recent = [-self.stride * k for k in range(self.window - 1, -1, -1)]
        return [FIRST_FRAME_DELTA, *recent]

    def validate_features(self) -> None:
        missing = [self.camera_key(v) for v in self.views if self.camera_key(v) not in self.input_features]
        if self.input_features and missing:
            raise HeadwayError(
                f"the dataset has no camera {missing} for the model's views {self.views}; its cameras: "
                f"{sorted(k for k in self.input_features if 'image' in k)}. Map them with camera_keys={{view: key}}"
            )
