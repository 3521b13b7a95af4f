"""A frozen Hugging Face vision tower as a frame encoder: CLIP, SigLIP, DINOv2 and kin.

Models load from a local folder or the local Hugging Face cache; the hub is only contacted when
`allow_download=True` (CLI: `--allow-download`). Preprocessing runs in torch on the batch, using
the mean, std and input size from the model's image-processor config, so frames never go through
PIL. The tower never trains: its features can be computed once and cached (see `feature_cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from headway.errors import HeadwayError
from headway.perception.encoders import ENCODERS, FrameEncoder

SUPPORTED = (
    "CLIP, SigLIP, DINOv2 (with or without registers), DINOv3 ViT, "
    "or any model with `get_image_features` or a `vision_model` tower"
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DOWNLOAD_HINT = "allow_download=True (CLI: --allow-download) fetches it from the Hugging Face Hub"

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Tower:
    """A loaded model, how to get one vector per image out of it, and that vector's size (None: probe)."""

    model: nn.Module
    features: FeatureFn
    dim: int | None


class HFVisionEncoder(FrameEncoder):
    """Image embeddings from a frozen pretrained vision model, one vector per frame.

    CLIP gives its projected image embedding, SigLIP its pooled output, DINOv2/DINOv3 the
    (normalised) CLS token. Frames are resized whole (bilinear, antialiased) to the model's input
    size rather than resized and center-cropped, so nothing near the frame border is cut off.
    """

    trainable = False

    def __init__(self, model: str, allow_download: bool = False, device: str | None = None) -> None:
        super().__init__()
        if not model:
            raise HeadwayError(
                "the hf encoder needs a model: `hf:<hub id or local folder>`, e.g. hf:facebook/dinov2-small"
            )
        self.model_name = model
        self.allow_download = allow_download
        source = _source(model)
        config = _load_config(source, model, allow_download)
        loader = _loader(config, model)
        vision = _vision_config(config)
        self.model_type = str(config.model_type)
        self.hidden_size = int(getattr(vision, "hidden_size", None) or getattr(vision, "hidden_dim", 0))
        processor = _load_processor_dict(source, model, allow_download)
        self.input_size = _input_size(processor, config, model)
        mean, std = _normalisation(processor)
        tower = loader(source, config, allow_download)
        tower.model.requires_grad_(False)
        tower.model.eval()
        self.tower = tower.model
        self._features = tower.features
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.output_dim = tower.dim if tower.dim is not None else self._probe_dim()
        self.revision = _revision(source, allow_download)

    def spec(self) -> str:
        height, width = self.input_size
        return (
            f"hf:{self.model_name}(type={self.model_type},hidden={self.hidden_size},dim={self.output_dim},"
            f"input={height}x{width},rev={self.revision})"
        )

    def train(self, mode: bool = True) -> HFVisionEncoder:
        """Keep the tower in eval mode whatever the enclosing model does (no dropout, fixed norms)."""
        super().train(mode)
        self.tower.eval()
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> the normalised pixel values the tower expects."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected frames shaped (N, 3, H, W), got {tuple(images.shape)}")
        pixels = images.to(device=self.mean.device, dtype=torch.float32)
        if tuple(pixels.shape[-2:]) != self.input_size:
            pixels = F.interpolate(pixels, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return (pixels - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self._features(self.tower, self.preprocess(images))
        return features.float().to(images.device)

    def _probe_dim(self) -> int:
        probe = torch.zeros(1, 3, *self.input_size, device=self.mean.device)
        try:
            with torch.no_grad():
                features = self._features(self.tower, (probe - self.mean) / self.std)
        except Exception as error:
            raise HeadwayError(
                f"{self.model_name} ({self.model_type}) could not embed a plain image "
                f"({type(error).__name__}: {error}); supported: {SUPPORTED}"
            ) from None
        if features.ndim != 2 or features.shape[0] != 1:
            raise HeadwayError(
                f"{self.model_name} ({self.model_type}) gives image features shaped {tuple(features.shape)}, "
                f"not one vector per image; supported: {SUPPORTED}"
            )
        return int(features.shape[1])


# -- loading ---------------------------------------------------------------------------------------
def _source(model: str) -> str:
    """The folder to load from when `model` is a local path, else the hub id unchanged."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        raise HeadwayError(
            f"model folder {model} does not exist; give an existing folder saved with `save_pretrained`, or a "
            f"hub id such as facebook/dinov2-small ({DOWNLOAD_HINT} when it is not in the local cache)"
        )
    return model


def _is_local(source: str) -> bool:
    return Path(source).is_dir()


def _not_available(model: str, source: str, allow_download: bool, what: str, error: Exception) -> HeadwayError:
    if _is_local(source):
        return HeadwayError(f"{model} has no {what}; save the model there with `save_pretrained` ({error})")
    if allow_download:
        return HeadwayError(f"could not fetch the {what} of {model} from the Hugging Face Hub: {error}")
    return HeadwayError(
        f"model {model} is not in the local Hugging Face cache (its {what} is missing) and downloads are off; "
        f"{DOWNLOAD_HINT}, or give a local folder with the saved model"
    )


def _load_config(source: str, model: str, allow_download: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, local_files_only=not allow_download)
    except OSError as error:
        raise _not_available(model, source, allow_download, "config (config.json)", error) from None
    except (ValueError, KeyError) as error:
        raise HeadwayError(
            f"{model}: this transformers version cannot read its config ({error}); supported: {SUPPORTED}"
        ) from None


def _load_processor_dict(source: str, model: str, allow_download: bool) -> dict:
    from transformers.image_processing_utils import ImageProcessingMixin

    try:
        processor, _ = ImageProcessingMixin.get_image_processor_dict(source, local_files_only=not allow_download)
    except OSError as error:
        what = "image-processor config (preprocessor_config.json)"
        raise _not_available(model, source, allow_download, what, error) from None
    return processor


def _vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers while a tower loads: the unused-weights warning of loading one tower out of a
    two-tower checkpoint, and the "Loading weights" bar of a model that loads in well under a second."""
    from transformers.utils import logging

    level, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bar:
            logging.enable_progress_bar()


def refuse_missing_weights(info: dict, cls_name: str, what: str, ignore: tuple[str, ...] = ()) -> None:
    """Refuse a checkpoint whose loading info (`output_loading_info=True`) shows weights left randomly
    initialised; `ignore`: prefixes of weights the caller never uses."""
    missing = [str(k) for k in info.get("missing_keys", []) if not str(k).startswith(ignore)]
    missing += [str(m) for m in info.get("mismatched_keys", [])]
    if missing:
        raise HeadwayError(
            f"{what}: the checkpoint lacks {len(missing)} weights of {cls_name} (e.g. {', '.join(missing[:3])}), "
            "so they would be random; check that the folder holds the whole model"
        )


def _from_pretrained(cls: Any, source: str, allow_download: bool, model: str, **kwargs: Any) -> nn.Module:
    """`cls.from_pretrained`, refusing checkpoints that would leave any weight randomly initialised."""
    try:
        with quiet_transformers():
            loaded, info = cls.from_pretrained(
                source, local_files_only=not allow_download, output_loading_info=True, **kwargs
            )
    except OSError as error:
        raise _not_available(model, source, allow_download, "weights", error) from None
    refuse_missing_weights(info, cls.__name__, model)
    return loaded


def _pooled(output: Any) -> torch.Tensor:
    """One vector per image from a model output: a tensor, image embeddings, pooler output or the first token."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    return output.last_hidden_state[:, 0]


def _clip(source: str, config: Any, allow_download: bool, model: str) -> _Tower:
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    if config.model_type == "clip":
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        with_projection = True
    else:
        vision = config
        with_projection = "CLIPVisionModelWithProjection" in (config.architectures or [])
    if with_projection:
        tower = _from_pretrained(CLIPVisionModelWithProjection, source, allow_download, model, config=vision)
        return _Tower(tower, lambda m, x: m(pixel_values=x).image_embeds, int(vision.projection_dim))
    tower = _from_pretrained(CLIPVisionModel, source, allow_download, model, config=vision)
    return _Tower(tower, lambda m, x: m(pixel_values=x).pooler_output, int(vision.hidden_size))


def _siglip_features(tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    output = tower(pixel_values=pixels)
    return output.pooler_output if output.pooler_output is not None else output.last_hidden_state.mean(dim=1)


def _siglip(source: str, config: Any, allow_download: bool, model: str) -> _Tower:
    from transformers import SiglipVisionModel

    vision = _vision_config(config)
    tower = _from_pretrained(SiglipVisionModel, source, allow_download, model, config=vision)
    return _Tower(tower, _siglip_features, int(vision.hidden_size))


def _cls_token(source: str, config: Any, allow_download: bool, model: str) -> _Tower:
    from transformers import AutoModel

    tower = _from_pretrained(AutoModel, source, allow_download, model, config=config)
    return _Tower(tower, lambda m, x: m(pixel_values=x).pooler_output, int(config.hidden_size))


def _generic_features(tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    if hasattr(tower, "get_image_features"):
        return _pooled(tower.get_image_features(pixel_values=pixels))
    return _pooled(tower.vision_model(pixel_values=pixels))


def _generic(source: str, config: Any, allow_download: bool, model: str) -> _Tower:
    from transformers import AutoModel

    tower = _from_pretrained(AutoModel, source, allow_download, model, config=config)
    if not (hasattr(tower, "get_image_features") or isinstance(getattr(tower, "vision_model", None), nn.Module)):
        raise _unsupported(model, config)
    return _Tower(tower, _generic_features, None)


FAMILIES: dict[str, Callable[[str, Any, bool, str], _Tower]] = {
    "clip": _clip,
    "clip_vision_model": _clip,
    "siglip": _siglip,
    "siglip_vision_model": _siglip,
    "dinov2": _cls_token,
    "dinov2_with_registers": _cls_token,
    "dinov3_vit": _cls_token,
}


REFUSED = {
    "siglip2": "SigLIP 2 NaFlex models take patchified variable-resolution inputs; use a fixed-resolution "
    "SigLIP 2 checkpoint instead (e.g. google/siglip2-base-patch16-224, which loads as SigLIP)",
}


def _unsupported(model: str, config: Any) -> HeadwayError:
    architectures = ", ".join(config.architectures or []) or "no architecture listed"
    reason = REFUSED.get(config.model_type, "it has no image-embedding entry point")
    return HeadwayError(
        f"{model} is a {config.model_type} model ({architectures}): {reason}; the hf encoder supports {SUPPORTED}"
    )


def _loader(config: Any, model: str) -> Callable[[str, Any, bool], _Tower]:
    """How to load this architecture; refuses unsupported ones before any weights are read."""
    family = FAMILIES.get(config.model_type)
    if config.model_type in REFUSED:
        raise _unsupported(model, config)
    if family is None:
        from transformers import MODEL_MAPPING

        try:
            model_class = MODEL_MAPPING[type(config)]
        except KeyError:
            raise _unsupported(model, config) from None
        if not (hasattr(model_class, "get_image_features") or getattr(config, "vision_config", None) is not None):
            raise _unsupported(model, config)
        family = _generic
    return lambda source, cfg, allow_download: family(source, cfg, allow_download, model)


# -- preprocessing ---------------------------------------------------------------------------------
def _size_hw(size: Any) -> tuple[int, int] | None:
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
        if "shortest_edge" in size:
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    return None


def _input_size(processor: dict, config: Any, model: str) -> tuple[int, int]:
    """The model's input resolution: the processor's crop size when it center-crops, else its resize size."""
    candidates = [processor.get("crop_size")] if processor.get("do_center_crop") else []
    candidates += [processor.get("size"), getattr(_vision_config(config), "image_size", None)]
    for candidate in candidates:
        size = _size_hw(candidate)
        if size is not None:
            return size
    raise HeadwayError(f"{model}: neither its image-processor config nor its config gives an input size")


def _normalisation(processor: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if not processor.get("do_normalize", True):
        return torch.zeros(3), torch.ones(3)
    mean, std = processor.get("image_mean"), processor.get("image_std")
    if mean is None or std is None:
        raise HeadwayError("the model's image-processor config has no image_mean / image_std to normalise frames with")
    return _per_channel(mean), _per_channel(std)


def _per_channel(value: float | list[float]) -> torch.Tensor:
    return torch.tensor([float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value])


# -- identity --------------------------------------------------------------------------------------
def _model_folder(source: str, allow_download: bool) -> Path:
    if _is_local(source):
        return Path(source)
    from transformers.utils import cached_file

    return Path(cached_file(source, "config.json", local_files_only=not allow_download)).parent


def _revision(source: str, allow_download: bool, chunks: int = 16, chunk_size: int = 1 << 16) -> str:
    """A short digest of the weight files (names, sizes, and evenly spaced samples of their bytes).

    Stable across copies of the same model, different when a folder is re-saved with other
    weights under the same config, and cheap: about a megabyte is read per file.
    """
    folder = _model_folder(source, allow_download)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size};".encode())
        with path.open("rb") as handle:
            for k in range(chunks):
                handle.seek(max(0, size - chunk_size) * k // max(1, chunks - 1))
                digest.update(handle.read(chunk_size))
    return digest.hexdigest()[:12]


ENCODERS.register("hf", HFVisionEncoder)
