"""GVL's prompt and the parser for its answers (pure Python and numpy: no torch, no transformers).

GVL (Generative Value Learning) asks a vision-language model for the task completion percentage of
each frame of an episode. The prompt gives the episode's first frame as 0% ("initial robot scene"),
then the query frames in a shuffled order, each labelled "Frame i:" (i = 1..n in the order shown),
so the model cannot read progress off the order of the frames; it answers one percentage per frame.

`build_prompt` returns the chat messages (images as `{"type": "image"}` placeholders, in the order
the images are passed to the processor) and the permutation; `parse_answer` reads the answer back
into n percentages in the presented order, or raises a `GVLAnswerError` naming the problem. It never
guesses a number: an answer without "Frame i" labels, a frame without a single clear percentage, a
range ("40-50%"), a missing/extra/repeated frame or a value outside 0-100 is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError

INTRO = (
    "You are an expert roboticist tasked to predict task completion percentages for frames of a robot for the "
    "task of {task}. The task completion percentages are between 0 and 100, where 100 corresponds to full task "
    "completion. We provide several examples of the robot performing the task at various stages and their "
    "corresponding task completion percentages. Note that these frames are in random order, so please pay "
    "attention to the individual frames when reasoning about task completion percentage.\n"
)
INITIAL = "Initial robot scene:\n"
INITIAL_AFTER = "\nIn the initial robot scene, the task completion percentage is 0%.\n"
QUERY = (
    "Now, for the task of {task}, output the task completion percentage for the following frames that are "
    "presented in random order. For each frame, format your response as follows: {form}\n"
)
FORM_SHORT = "Frame {i}: {p}%"
FORM_DESCRIBE = "Frame {i}: Frame Description: {d}, Task Completion Percentage: {p}%"
CLOSING = "\nAnswer for every frame from Frame 1 to Frame {n}, one line per frame, each with one percentage between 0 and 100.\n"

ANSWER_SHOWN = 300  # characters of a bad answer quoted in its error


class GVLAnswerError(HeadwayError):
    """A VLM answer that does not give one percentage in 0-100 for each frame. `problem` is one of
    "unparsable", "count", "range"; `answer` holds the raw text."""

    problem = "unparsable"

    def __init__(self, message: str, answer: str) -> None:
        self.answer = answer
        self.detail = message
        shown = answer if len(answer) <= ANSWER_SHOWN else answer[:ANSWER_SHOWN] + "..."
        super().__init__(f"{message}; the answer was: {shown!r}")


class GVLUnparsableAnswer(GVLAnswerError):
    """No "Frame i: P%" labels, or a frame without one clear percentage."""

    problem = "unparsable"


class GVLFrameCountError(GVLAnswerError):
    """Frames missing, extra or repeated in the answer."""

    problem = "count"


class GVLRangeError(GVLAnswerError):
    """A percentage below 0 or above 100."""

    problem = "range"


@dataclass
class GVLPrompt:
    """Chat messages for one query, and which query frame each presented "Frame i" shows.

    `order[i - 1]` is the position (in the query-frame list, 0-based) of the frame labelled "Frame i".
    The images go to the processor as [initial frame] + [query_frames[k] for k in order]."""

    messages: list[dict]
    order: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.order)


def shuffled_order(count: int, seed: int | list[int]) -> np.ndarray:
    """A permutation of range(count), the same for the same seed (numpy's PCG64 via default_rng)."""
    return np.random.default_rng(seed).permutation(count)


def build_prompt(task: str, count: int, seed: int | list[int], describe: bool = False) -> GVLPrompt:
    """GVL's prompt for `count` query frames, shuffled by `seed`. `describe` asks for GVL's original
    per-frame description before each percentage (more tokens; the parser reads either form)."""
    if count < 1:
        raise HeadwayError(f"a GVL query needs at least one frame after the initial one, got {count}")
    task = " ".join(str(task).split()) or "the task"
    order = shuffled_order(count, seed)
    form = (FORM_DESCRIBE if describe else FORM_SHORT).format(i="{i}", d="{description}", p="{percentage}")
    content: list[dict] = [
        {"type": "text", "text": INTRO.format(task=task)},
        {"type": "text", "text": INITIAL},
        {"type": "image"},
        {"type": "text", "text": INITIAL_AFTER},
        {"type": "text", "text": QUERY.format(task=task, form=form)},
    ]
    for i in range(1, count + 1):
        content.append({"type": "text", "text": f"Frame {i}:\n"})
        content.append({"type": "image"})
        content.append({"type": "text", "text": "\n"})
    content.append({"type": "text", "text": CLOSING.format(n=count)})
    return GVLPrompt([{"role": "user", "content": content}], order)


# "Frame 3:" at the start of a line, after optional list / markdown marks ("- ", "**", "### ").
_HEADING_LINE = re.compile(r"^[ \t>*#\-+\d.)]*?\**\s*frame\s*#?\s*(\d+)\s*\**\s*[:=.)\-–—]", re.IGNORECASE | re.MULTILINE)
# "Frame 3:" anywhere (answers written on one line: "Frame 1: 20%, Frame 2: 50%").
_HEADING_INLINE = re.compile(r"\bframe\s*#?\s*(\d+)\s*\**\s*[:=]", re.IGNORECASE)
_THINKING = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_RANGE = re.compile(r"\d+(?:\.\d+)?\s*%?\s*(?:-|–|—|to)\s*\d+(?:\.\d+)?\s*%", re.IGNORECASE)
_PERCENT = re.compile(_NUMBER + r"\s*(?:%|percent\b)", re.IGNORECASE)
_LABELLED = re.compile(r"completion(?:\s+percentages?)?\s*(?:is|:|=|of)?\s*[:=]?\s*\**\s*" + _NUMBER, re.IGNORECASE)
_BARE = re.compile(r"^\s*\**\s*" + _NUMBER + r"\s*\**\s*(?:%|percent)?\s*[.,;]?\s*$", re.IGNORECASE)


def _headings(text: str, count: int) -> list[re.Match] | None:
    """The heading matches to split the answer by: line-start headings when they name each frame once,
    else inline ones when those do; None when neither does (the caller reports which frames)."""
    for pattern in (_HEADING_LINE, _HEADING_INLINE):
        found = list(pattern.finditer(text))
        numbers = [int(m.group(1)) for m in found]
        if sorted(numbers) == list(range(1, count + 1)):
            return found
    return None


def _value(segment: str) -> float | None:
    """The one percentage a frame's text gives, or None when it gives none, a range, or several that
    disagree. A labelled "Completion Percentage: P" wins; else the single percentage of the frame's
    first line; else the single one of its whole text; else a bare number alone on the first line."""
    labelled = [float(v) for v in _LABELLED.findall(segment)]
    if labelled:
        return labelled[-1] if len(set(labelled)) == 1 else None
    stripped = segment.strip()
    first_line = stripped.splitlines()[0] if stripped else ""
    for part in (first_line, segment):
        if _RANGE.search(part):
            return None
        percents = {float(v) for v in _PERCENT.findall(part)}
        if len(percents) == 1:
            return percents.pop()
        if percents:
            return None
    bare = _BARE.match(first_line)
    return float(bare.group(1)) if bare else None


def parse_answer(text: str, count: int) -> np.ndarray:
    """Percentages (count,) for "Frame 1".."Frame count" in that order, from a VLM answer.

    Tolerates extra text, markdown, a <think>...</think> block, GVL's "Frame Description: ..., Task Completion Percentage: P%"
    form, bare numbers ("Frame 2: 40") and one-line answers. Raises GVLFrameCountError when frames are
    missing, extra or repeated, GVLRangeError when a value is outside 0-100, GVLUnparsableAnswer when
    there are no frame labels or a frame has no single clear percentage."""
    text = "" if text is None else str(text)
    text = _THINKING.sub("", text)  # a reasoning model's <think>...</think> may mention frames in passing
    if not text.strip():
        raise GVLUnparsableAnswer(f"the VLM gave an empty answer for {count} frames", text)
    found = _headings(text, count)
    if found is None:
        numbers = sorted({int(m.group(1)) for p in (_HEADING_LINE, _HEADING_INLINE) for m in p.finditer(text)})
        if not numbers:
            raise GVLUnparsableAnswer(f"the VLM answer has no 'Frame i: P%' lines for the {count} frames", text)
        lines = [int(m.group(1)) for m in _HEADING_LINE.finditer(text)] or [int(m.group(1)) for m in _HEADING_INLINE.finditer(text)]
        expected = set(range(1, count + 1))
        missing = sorted(expected - set(lines))
        extra = sorted(set(lines) - expected)
        repeated = sorted({n for n in lines if lines.count(n) > 1})
        parts = [f"missing {missing}" if missing else "", f"extra {extra}" if extra else "", f"repeated {repeated}" if repeated else ""]
        raise GVLFrameCountError(
            f"the VLM answered {len(lines)} frame(s) where {count} were asked (Frame 1 to Frame {count}): "
            + ", ".join(p for p in parts if p),
            text,
        )
    values = np.full(count, np.nan)
    unclear = []
    for position, match in enumerate(found):
        end = found[position + 1].start() if position + 1 < len(found) else len(text)
        value = _value(text[match.end() : end])
        if value is None:
            unclear.append(int(match.group(1)))
        else:
            values[int(match.group(1)) - 1] = value
    if unclear:
        raise GVLUnparsableAnswer(f"no single clear percentage for frame(s) {sorted(unclear)} of {count}", text)
    outside = [i + 1 for i, v in enumerate(values) if not 0.0 <= v <= 100.0]
    if outside:
        shown = ", ".join(f"Frame {i}: {values[i - 1]:g}%" for i in outside)
        raise GVLRangeError(f"percentages must be within 0-100, got {shown}", text)
    return values
