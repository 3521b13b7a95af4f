"""Zero-shot VLM progress (GVL) behind headway's `RewardModel` protocol.

`GVLRewardModel` asks any transformers image-text-to-text model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, ...
loaded with `AutoProcessor` + `AutoModelForImageTextToText`) for per-frame task completion
percentages in GVL's format (prompt and parser: `headway.reward.gvl_prompt`): the episode's first
frame is given as 0%, the query frames follow in a seeded shuffle labelled "Frame i:", and the answer
gives one percentage per frame. Nothing is trained; `save` writes only these settings.

Named as `gvl:MODEL[?key=value&...]` wherever headway takes a reward model
(`load_reward_model("gvl:Qwen/Qwen2.5-VL-3B-Instruct?views=agentview,robot0_eye_in_hand")`):

    MODEL            a hub id, or a local folder (then read with local_files_only=True), or a folder
                     written by `GVLRewardModel.save` (its config.json has format "headway.gvl")
    views            comma-separated camera names the model scores (default agentview,robot0_eye_in_hand)
    max_frames       query frames per VLM call (default 16); longer episodes are subsampled
    image_size       frames are resized to this square size for the VLM (default 224; labelling
                     resizes to it before scoring)
    seed             seed of the frame shuffle (default 0)
    attempts         VLM calls per view before an answer counts as bad, each with a new shuffle (default 2)
    on_bad_answer    "error" (default): raise the GVLAnswerError; "flag": record it in the output's
                     `bad_answers` and leave that view out (progress NaN where no view answered)
    max_new_tokens   answer budget (default 12 per frame + 32; 40 per frame + 32 with describe)
    describe         1: GVL's original "Frame Description: ..., Task Completion Percentage: P%" answers
    causal           1: score_episode scores each frame only from the frames up to it (see below)
    dtype            auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16

How an episode is scored (`score_episode`), per view:
- T = 1: progress [0] (the initial frame is 0% by GVL's premise); no VLM call.
- Otherwise the query frames are frame T-1 and up to `max_frames - 1` more, evenly spaced over
  1..T-1 (all of them when T - 1 <= max_frames). Frame 0 is the initial frame at 0%; progress at
  every other frame is linear interpolation between the answered frames (and frame 0), divided by 100.
- Views are asked separately and fused by their mean.
This is GVL's whole-episode protocol: the answer for a frame can depend on frames after it (the
model sees them all, shuffled), so by default `score_episode` is not causal. `stream` is (see
GVLStreamingScorer), and so is `score_episode` with `causal=1`: for each frame f of the query grid
above it asks about the prefix 0..f exactly as `stream` would at step f and keeps the answer for f;
frames between grid points hold the last grid value (never a later one). Cost: one VLM call per grid
frame and view (up to max_frames per view) instead of one per view. When T - 1 <= max_frames every
frame is a grid frame and the numbers equal `stream`'s step by step.

What the model does not produce is reported absent, never invented (`ABSENT` names the fields; the
output's `absent` attribute repeats them): `stage_names` is empty, `stage` is -1, `stage_probs` has
shape (T, 0), `success` and `uncertainty` are NaN. Where the protocol wants a number, NaN is the marker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from headway import __version__
from headway.atomic import atomic_write_json
from headway.errors import HeadwayError, unknown_name
from headway.perception.preprocess import resize_frames
from headway.reward.gvl_prompt import GVLAnswerError, build_prompt, parse_answer
from headway.reward.interface import RewardOutput
from headway.runtime import default_device

FORMAT = "headway.gvl"
FORMAT_VERSION = 1
DEFAULT_VIEWS = ("agentview", "robot0_eye_in_hand")
ABSENT = frozenset({"stage", "stage_probs", "success", "uncertainty"})
BAD_ANSWER_MODES = ("error", "flag")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class GVLConfig:
    """Settings of a GVL reward model; `model` is the VLM's hub id or local folder."""

    model: str
    views: tuple[str, ...] = DEFAULT_VIEWS
    max_frames: int = 16
    image_size: int = 224
    seed: int = 0
    attempts: int = 2
    on_bad_answer: str = "error"
    max_new_tokens: int | None = None
    describe: bool = False
    causal: bool = False
    dtype: str = "auto"

    def __post_init__(self) -> None:
        self.views = tuple(str(v) for v in self.views)
        if not self.model:
            raise HeadwayError("gvl: no model given; name one as gvl:HUB_ID or gvl:/path/to/model")
        if not self.views or any(not v for v in self.views) or len(set(self.views)) != len(self.views):
            raise HeadwayError(f"gvl: views must be distinct non-empty camera names, got {list(self.views)}")
        for name, value, low in (("max_frames", self.max_frames, 1), ("image_size", self.image_size, 28), ("attempts", self.attempts, 1)):
            if int(value) != value or value < low:
                raise HeadwayError(f"gvl: {name} must be a whole number >= {low}, got {value}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise HeadwayError(f"gvl: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.on_bad_answer not in BAD_ANSWER_MODES:
            raise unknown_name("gvl on_bad_answer mode", self.on_bad_answer, BAD_ANSWER_MODES)
        if self.dtype not in DTYPES:
            raise unknown_name("gvl dtype", self.dtype, DTYPES)

    def answer_tokens(self, frames: int) -> int:
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return (40 if self.describe else 12) * frames + 32

    def to_dict(self) -> dict:
        settings = asdict(self)
        settings["views"] = list(self.views)
        return settings

    @classmethod
    def from_spec(cls, spec: str) -> GVLConfig:
        """`MODEL[?key=value&...]` (the part after `gvl:`); see the module docstring for the keys."""
        model, _, query = spec.partition("?")
        known = {f.name: f for f in fields(cls) if f.name != "model"}
        settings: dict = {}
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            if key not in known:
                raise unknown_name("gvl option", key, list(known))
            try:
                if key == "views":
                    settings[key] = tuple(v.strip() for v in value.split(",") if v.strip())
                elif key in ("max_frames", "image_size", "seed", "attempts", "max_new_tokens"):
                    settings[key] = int(value)
                elif key in ("describe", "causal"):
                    if value.lower() not in ("0", "1", "true", "false", "yes", "no"):
                        raise ValueError(value)
                    settings[key] = value.lower() in ("1", "true", "yes")
                else:
                    settings[key] = value
            except ValueError:
                raise HeadwayError(f"gvl option {key}={value!r} is not valid; see `headway.reward.gvl` for the options") from None
        saved = _saved_settings(Path(model)) if model else None
        if saved is not None:
            return cls(**{**saved, **settings})
        return cls(model=model, **settings)


def _saved_settings(path: Path) -> dict | None:
    """The settings of a folder written by `GVLRewardModel.save`, or None for anything else."""
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        meta = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    if meta.get("format_version") != FORMAT_VERSION:
        raise HeadwayError(
            f"{path} holds GVL settings in format version {meta.get('format_version')}; this headway reads "
            f"version {FORMAT_VERSION}. Write them again with GVLRewardModel.save"
        )
    settings = dict(meta["gvl"])
    settings["views"] = tuple(settings.get("views", DEFAULT_VIEWS))
    return settings


@dataclass
class BadAnswer:
    """A view whose VLM answers were unusable in every attempt (kept when on_bad_answer="flag")."""

    view: str
    frames: tuple[int, ...]  # the episode frames that were asked about
    problem: str  # "unparsable", "count" or "range"
    message: str
    answers: tuple[str, ...]  # the raw answer of each attempt


@dataclass
class GVLOutput(RewardOutput):
    """A RewardOutput with what GVL knows about it: the fields it does not produce (`absent`), each
    view's progress before fusion (`per_view`, NaN for a view that gave no usable answer), and the
    answers that were unusable (`bad_answers`, only with on_bad_answer="flag")."""

    absent: frozenset = ABSENT
    per_view: dict = field(default_factory=dict)
    bad_answers: list = field(default_factory=list)


def query_frames(length: int, max_frames: int) -> np.ndarray:
    """The frames GVL asks about for an episode of `length` frames: frame length-1 and up to
    max_frames-1 more, evenly spaced over 1..length-1 (every frame after the first when they fit)."""
    if length < 2:
        return np.zeros(0, dtype=np.int64)
    if length - 1 <= max_frames:
        return np.arange(1, length, dtype=np.int64)
    return np.unique(np.round(np.linspace(1, length - 1, max_frames)).astype(np.int64))


def interpolate(length: int, frames: np.ndarray, percentages: np.ndarray) -> np.ndarray:
    """Progress in [0, 1] at every frame: frame 0 at 0, the asked frames at their answers, linear between."""
    x = np.concatenate([[0], frames]).astype(np.float64)
    y = np.concatenate([[0.0], np.asarray(percentages, dtype=np.float64) / 100.0])
    return np.interp(np.arange(length, dtype=np.float64), x, y)


def absent_output(progress: np.ndarray, **extra) -> GVLOutput:
    """A GVLOutput for `progress` (T,) with stage, stage_probs, success and uncertainty marked absent."""
    progress = np.asarray(progress, dtype=np.float32).reshape(-1)
    length = len(progress)
    return GVLOutput(
        progress=progress,
        stage=np.full(length, -1, dtype=np.int64),
        stage_probs=np.zeros((length, 0), dtype=np.float32),
        success=np.full(length, np.nan, dtype=np.float32),
        uncertainty=np.full(length, np.nan, dtype=np.float32),
        **extra,
    )


class GVLRewardModel:
    """Zero-shot progress from a VLM, asked per view in GVL's format and fused by the mean.

    `vlm` and `processor` are a transformers image-text-to-text model and its processor
    (`from_pretrained` loads them). Every VLM call goes through `ask`, which tests may replace."""

    absent_outputs = ABSENT

    def __init__(self, config: GVLConfig, vlm=None, processor=None, device=None) -> None:
        self.config = config
        self.vlm = vlm
        self.processor = processor
        self.device = device
        self.calls = 0  # VLM calls made, for cost accounting

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, config: GVLConfig | str, device: str | None = None) -> GVLRewardModel:
        """Load the VLM named by `config.model`: a local folder (local_files_only) or a hub id."""
        config = GVLConfig.from_spec(config) if isinstance(config, str) else config  # bad options fail before imports

        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        target = default_device(device)
        local = Path(config.model).exists()
        dtype = config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if target.type == "cuda" else "float32"
        source = f"local folder {config.model}" if local else f"hub model {config.model!r}"
        if local and not (Path(config.model) / "config.json").is_file():
            raise HeadwayError(
                f"gvl: the {source} has no config.json, so it holds no model; pass the folder of a downloaded "
                "vision-language model (`hf download ID --local-dir DIR`), or a hub id"
            )
        try:
            processor = AutoProcessor.from_pretrained(config.model, local_files_only=local)
            vlm = AutoModelForImageTextToText.from_pretrained(config.model, local_files_only=local, dtype=getattr(torch, dtype))
        except OSError as error:
            fix = (
                "check that it holds the model's config.json, weights and processor files"
                if local
                else "check the id, or download it first (`hf download ID --local-dir DIR`) and pass gvl:DIR"
            )
            raise HeadwayError(f"gvl: cannot load the {source} ({error}); {fix}") from None
        except ValueError as error:
            raise HeadwayError(
                f"gvl: the {source} is not an image-text-to-text model transformers can load ({error}); "
                "use a vision-language chat model such as Qwen/Qwen2.5-VL-3B-Instruct"
            ) from None
        if getattr(processor, "image_processor", None) is None or getattr(processor, "chat_template", None) is None:
            raise HeadwayError(
                f"gvl: the {source} has no image processor or chat template, so it cannot be asked about frames; "
                "use an instruction-tuned vision-language model such as Qwen/Qwen2.5-VL-3B-Instruct"
            )
        return cls(config, vlm.to(target).eval(), processor, target)

    # -- protocol properties -------------------------------------------------------------------------
    @property
    def views(self) -> tuple[str, ...]:
        return self.config.views

    @property
    def stage_names(self) -> tuple[str, ...]:
        return ()  # GVL gives no stages: stage is -1 and stage_probs has no columns

    @property
    def image_size(self) -> int:
        return self.config.image_size

    # -- the VLM call --------------------------------------------------------------------------------
    def ask(self, messages: list[dict], images: list[np.ndarray], max_new_tokens: int) -> tuple[str, bool]:
        """One greedy VLM answer to `messages` (image placeholders in the order of `images`).
        Returns the answer text and whether it stopped at `max_new_tokens` (likely cut short)."""
        import torch
        from PIL import Image

        if self.vlm is None or self.processor is None:
            raise HeadwayError("gvl: this GVLRewardModel has no VLM loaded; build it with GVLRewardModel.from_pretrained")
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        pictures = [Image.fromarray(np.ascontiguousarray(image)) for image in images]
        inputs = self.processor(text=[text], images=pictures, return_tensors="pt").to(self.device)
        with torch.no_grad():
            output = self.vlm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = output[:, inputs["input_ids"].shape[1] :]
        answer = self.processor.batch_decode(new, skip_special_tokens=True)[0]
        return answer, int(new.shape[1]) >= max_new_tokens

    # -- input checks --------------------------------------------------------------------------------
    def check_views(self, views) -> list[str]:
        """The given view names, if each is a view of this model (as StageRewardModel.check_views)."""
        views = list(views)
        if not views:
            raise HeadwayError(f"no camera views given; this GVL model scores {', '.join(self.views)}")
        unknown = [v for v in views if v not in self.views]
        if unknown:
            raise HeadwayError(
                f"view(s) {', '.join(unknown)} are not views of this GVL model; its views: {', '.join(self.views)}; "
                f"given: {', '.join(views)}. Name the cameras with gvl:MODEL?views=a,b"
            )
        return views

    def check_images(self, images: dict[str, np.ndarray], single: bool = False) -> int:
        """Known views, (T,)H,W,3 uint8 frames, equal lengths. Returns T (1 when single)."""
        self.check_views(images)
        lengths = {}
        for view, frames in images.items():
            frames = np.asarray(frames)
            dims = 3 if single else 4
            if frames.ndim != dims or frames.shape[-1] != 3:
                raise HeadwayError(
                    f"view {view!r}: expected {'H x W x 3' if single else 'T x H x W x 3'} RGB frames, got shape {frames.shape}"
                )
            if frames.dtype != np.uint8:
                raise HeadwayError(f"view {view!r}: frames are {frames.dtype}; pass uint8 RGB in 0-255")
            lengths[view] = 1 if single else frames.shape[0]
        if len(set(lengths.values())) != 1:
            raise HeadwayError(f"views have different frame counts: {lengths}")
        length = next(iter(lengths.values()))
        if length == 0:
            raise HeadwayError("the episode is empty: no frames to score")
        return length

    # -- scoring -------------------------------------------------------------------------------------
    def score_view(self, frames: np.ndarray, task: str, view: str) -> tuple[np.ndarray, BadAnswer | None]:
        """Progress (T,) of one view's frames, or NaNs and the BadAnswer when every attempt failed
        (raised instead when on_bad_answer="error")."""
        config = self.config
        length = len(frames)
        asked = query_frames(length, config.max_frames)
        if not len(asked):
            return np.zeros(length), None
        slot = self.views.index(view)
        answers, last = [], None
        for attempt in range(config.attempts):
            prompt = build_prompt(task, len(asked), [config.seed, slot, attempt, length], config.describe)
            images = list(resize_frames(frames[np.concatenate([[0], asked[prompt.order]])], config.image_size))
            tokens = config.answer_tokens(len(asked))
            answer, cut = self.ask(prompt.messages, images, tokens)
            self.calls += 1
            answers.append(answer)
            try:
                percentages = parse_answer(answer, len(asked))
            except GVLAnswerError as error:
                last = error
                if cut:
                    last.cut_at = tokens
                continue
            by_frame = np.empty(len(asked))
            by_frame[prompt.order] = percentages  # "Frame i" showed query frame order[i - 1]
            return interpolate(length, asked, by_frame), None
        assert last is not None
        cut = f" (the answer stopped at max_new_tokens={last.cut_at}; raise it with ?max_new_tokens=N)" if hasattr(last, "cut_at") else ""
        message = (
            f"gvl: view {view!r}: {config.attempts} attempt(s) gave no usable answer for {len(asked)} frames: "
            f"{last.detail}{cut}"
        )
        if config.on_bad_answer == "error":
            raise type(last)(
                message + ". Use an instruction-tuned VLM (e.g. Qwen/Qwen2.5-VL-7B-Instruct), fewer frames "
                "(?max_frames=N), more attempts (?attempts=N), or ?on_bad_answer=flag to record bad answers and go on",
                last.answer,
            )
        bad = BadAnswer(view, tuple(int(f) for f in asked), last.problem, message, tuple(answers))
        return np.full(length, np.nan), bad

    def causal_view(self, frames: np.ndarray, task: str, view: str) -> tuple[np.ndarray, list[BadAnswer]]:
        """Progress (T,) where frame f depends only on frames 0..f: each grid frame asked as the
        newest of its prefix (as `stream` does), the frames between holding the last grid value."""
        length = len(frames)
        grid = query_frames(length, self.config.max_frames)
        values, bad = np.zeros(len(grid) + 1), []
        for k, frame in enumerate(grid, 1):
            progress, problem = self.score_view(frames[: frame + 1], task, view)
            values[k] = progress[-1]
            if problem is not None:
                bad.append(problem)
        held = np.searchsorted(grid, np.arange(length), side="right")  # grid points at or before each frame
        return values[held], bad

    def _fuse(self, images: dict[str, np.ndarray], task: str, causal: bool = False) -> GVLOutput:
        per_view, bad = {}, []
        for view in self.views:
            if view not in images:
                continue
            frames = np.asarray(images[view])
            if causal:
                progress, problems = self.causal_view(frames, task, view)
            else:
                progress, problem = self.score_view(frames, task, view)
                problems = [problem] if problem is not None else []
            per_view[view] = progress.astype(np.float32)
            bad.extend(problems)
        stacked = np.stack(list(per_view.values()))
        answered = np.isfinite(stacked)
        fused = np.where(answered.any(0), np.nansum(stacked, 0) / np.maximum(answered.sum(0), 1), np.nan)
        return absent_output(fused, per_view=per_view, bad_answers=bad)

    def score_episode(
        self, images: dict[str, np.ndarray], task: str, state: np.ndarray | None = None, batch_size: int = 256
    ) -> GVLOutput:
        """GVL progress of every frame (one VLM call per view and attempt, or per grid frame too with
        causal=1; `state` and `batch_size` are not used). Causal only with causal=1: see the module docstring."""
        self.check_images(images)
        return self._fuse(images, task, self.config.causal)

    def stream(self, task: str) -> GVLStreamingScorer:
        return GVLStreamingScorer(self, task)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write `config.json` (format headway.gvl) with these settings to the folder `path`. The VLM
        itself is not copied: the folder names it, and `gvl:PATH` loads it from there again."""
        path = Path(path)
        if (path / "config.json").exists() and _saved_settings(path) is None:
            raise HeadwayError(f"{path} already holds another config.json; save the GVL settings to an empty folder")
        settings = self.config.to_dict()
        if Path(settings["model"]).exists():
            settings["model"] = str(Path(settings["model"]).resolve())
        atomic_write_json(
            path / "config.json", {"format": FORMAT, "format_version": FORMAT_VERSION, "headway_version": __version__, "gvl": settings}
        )

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> GVLRewardModel:
        """Load the VLM named by a folder written by `save`."""
        settings = _saved_settings(Path(path))
        if settings is None:
            raise HeadwayError(f"{path} is not a folder written by GVLRewardModel.save (no config.json of format {FORMAT})")
        return cls.from_pretrained(GVLConfig(**settings), device)


class GVLStreamingScorer:
    """Causal GVL progress for a live episode: each `step` asks the VLM again about the frames so far
    (the first as 0%, up to max_frames of the rest, always including the newest) and returns the
    newest frame's progress. Cost: one VLM call per view per step (more on a bad answer), each with
    up to max_frames + 1 images; memory: every frame of the episode so far, per view. Step 0 returns
    0 without a call (the initial frame is 0% by GVL's premise)."""

    def __init__(self, model: GVLRewardModel, task: str) -> None:
        self.model = model
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.frames: dict[str, list[np.ndarray]] = {}

    def step(self, images: dict[str, np.ndarray], state: np.ndarray | None = None) -> GVLOutput:
        model = self.model
        model.check_images(images, single=True)
        if self.frames and set(images) != set(self.frames):
            raise HeadwayError(
                f"this episode was started with views {', '.join(self.frames)} but this step gives {', '.join(images)}; "
                "give the same views every step (or reset)"
            )
        for view, frame in images.items():
            self.frames.setdefault(view, []).append(np.asarray(frame))
        out = model._fuse({view: np.stack(frames) for view, frames in self.frames.items()}, self.task)
        return absent_output(out.progress[-1:], per_view={v: p[-1:] for v, p in out.per_view.items()}, bad_answers=out.bad_answers)
