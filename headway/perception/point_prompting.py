"""Point prompting a generative VLM for affordance keypoints (RoboPoint's normalised format).

For users with a transformers image-text-to-text model (Qwen2.5-VL, Qwen2-VL, Molmo...): ask
for points of a named affordance as RoboPoint does, "[(x1, y1), ...]" with x, y in [0, 1], and
parse the answer robustly. Also understood: Molmo's `<point x="..." y="...">` / `<points x1=...>`
tags (percent of the image) and Qwen2.5-VL's `{"point_2d": [x, y]}` JSON (pixels of the image
it was given). Answers that cannot be read, or whose coordinates fall outside the image, are
reported as such, never clipped or guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headway.errors import HeadwayError
from headway.runtime import default_device

OK = "ok"
UNPARSABLE = "unparsable"
OUT_OF_RANGE = "out_of_range"
EMPTY = "empty"

AFFORDANCE_PHRASES = {
    "gripper": "the point between the robot gripper's fingers",
    "grasp": "the point on the object where the robot should grasp it",
    "lift_target": "the point in the air above the red cube where it should be lifted to",
    "above_place": "the point in the air just above the green cube where the red cube should be carried",
    "place": "the point on top of the green cube where the red cube should be placed",
    "over_bin": "the point in the air above the target bin where the can should be carried",
    "drop": "the point inside the target bin where the can should be dropped",
    "handle": "the point on the door handle where the robot should grasp it",
    "handle_open": "the point where the door handle is when the door is open",
}

PROMPT = (
    "{context}Locate {target}. Your answer should be formatted as a list of tuples, i.e. [(x1, y1), (x2, y2), ...], "
    "where each tuple contains the x and y coordinates of a point satisfying the conditions above. The coordinates "
    "should be between 0 and 1, indicating the normalized pixel locations of the points in the image."
)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"[\(\[]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*[\)\]]")
_MOLMO_POINT = re.compile(rf"<point\b[^>]*?\bx\s*=\s*\"({_NUMBER})\"[^>]*?\by\s*=\s*\"({_NUMBER})\"", re.IGNORECASE)
_MOLMO_POINTS = re.compile(r"<points\b([^>]*)>", re.IGNORECASE)
_MOLMO_ATTR = re.compile(rf"\b([xy])(\d+)\s*=\s*\"({_NUMBER})\"", re.IGNORECASE)


@dataclass
class PointAnswer:
    """A parsed answer: points normalised to [0, 1] (x right, y down), or a status saying why not."""

    status: str
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (N, 2) normalised
    raw: str = ""
    problem: str = ""
    format: str = ""  # "robopoint", "molmo", "qwen_json"

    @property
    def ok(self) -> bool:
        return self.status == OK

    def pixels(self, width: int, height: int) -> np.ndarray:
        """Points in pixel coordinates (pixel centres at integers) of a width x height image."""
        return self.points * np.array([width, height]) - 0.5

    def mean_pixel(self, width: int, height: int) -> np.ndarray | None:
        return None if not self.ok else self.pixels(width, height).mean(0)


def build_prompt(keypoint: str, instruction: str | None = None, description: str | None = None) -> str:
    """RoboPoint-style question for one named affordance (a `description` overrides the built-in phrase)."""
    target = description or AFFORDANCE_PHRASES.get(keypoint) or f"the {keypoint.replace('_', ' ')} point"
    context = f"The robot's task: {instruction}. " if instruction else ""
    return PROMPT.format(context=context, target=target)


def _checked(points: list[tuple[float, float]], raw: str, fmt: str) -> PointAnswer:
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(array)):
        return PointAnswer(UNPARSABLE, raw=raw, problem="coordinates are not finite numbers", format=fmt)
    outside = ~np.all((array >= 0.0) & (array <= 1.0), axis=1)
    if outside.any():
        return PointAnswer(
            OUT_OF_RANGE, raw=raw, format=fmt,
            problem=f"{int(outside.sum())} of {len(array)} points lie outside the image: {array[outside].tolist()}",
        )  # fmt: skip
    return PointAnswer(OK, array, raw, "", fmt)


def parse_points(answer: str, image_size: tuple[int, int] | None = None) -> PointAnswer:
    """Read points from a VLM answer. `image_size` (width, height) is needed only for pixel JSON answers.

    RoboPoint tuples must already be normalised: coordinates above 1 are out of range (they may be
    pixels or percentages; which, the answer does not say, so it is not guessed).
    """
    raw = answer if isinstance(answer, str) else ""
    if not isinstance(answer, str) or not answer.strip():
        return PointAnswer(EMPTY, raw=raw, problem="the answer is empty")
    text = answer.strip()
    # Molmo: percentages in tags
    molmo = [(float(x) / 100.0, float(y) / 100.0) for x, y in _MOLMO_POINT.findall(text)]
    for attributes in _MOLMO_POINTS.findall(text):
        coords: dict[str, dict[str, float]] = {}
        for axis, index, value in _MOLMO_ATTR.findall(attributes):
            coords.setdefault(index, {})[axis.lower()] = float(value) / 100.0
        for index in sorted(coords, key=int):
            if set(coords[index]) != {"x", "y"}:
                return PointAnswer(UNPARSABLE, raw=raw, problem=f"Molmo point {index} lacks an x or y", format="molmo")
            molmo.append((coords[index]["x"], coords[index]["y"]))
    if molmo:
        return _checked(molmo, raw, "molmo")
    if re.search(r"<points?\b", text, re.IGNORECASE):
        return PointAnswer(UNPARSABLE, raw=raw, problem="a <point> tag without readable x and y", format="molmo")
    # Qwen2.5-VL: JSON with point_2d in pixels
    if "point_2d" in text:
        if image_size is None:
            return PointAnswer(UNPARSABLE, raw=raw, problem="pixel point_2d answer but no image size given", format="qwen_json")
        found = re.findall(rf"\"point_2d\"\s*:\s*\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]", text)
        if not found:
            return PointAnswer(UNPARSABLE, raw=raw, problem="point_2d without two numbers", format="qwen_json")
        width, height = image_size
        return _checked([((float(x) + 0.5) / width, (float(y) + 0.5) / height) for x, y in found], raw, "qwen_json")
    # RoboPoint: a list of (x, y) tuples
    body = re.sub(r"```(?:json|python)?", "", text)
    pairs = _PAIR.findall(body)
    if pairs:
        return _checked([(float(x), float(y)) for x, y in pairs], raw, "robopoint")
    try:  # a bare JSON list such as [[0.1, 0.2]]
        value = json.loads(body)
        if isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 for p in value):
            return _checked([(float(p[0]), float(p[1])) for p in value], raw, "robopoint")
    except (json.JSONDecodeError, TypeError, ValueError):
        pass
    return PointAnswer(UNPARSABLE, raw=raw, problem="no (x, y) pairs, <point> tags or point_2d entries found")


class VLMPointer:
    """Asks a transformers image-text-to-text model for affordance points in one image."""

    def __init__(self, model, processor, max_new_tokens: int = 64) -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, allow_download: bool = False, device: str | None = None, **kwargs) -> VLMPointer:
        """Load a model and its processor (from the local cache or a folder unless `allow_download`)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(str(name_or_path), local_files_only=not allow_download)
            model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), local_files_only=not allow_download)
        except (OSError, ValueError) as error:  # missing files; a path that is not a hub id
            hint = "" if allow_download else " (only local files are used; pass allow_download=True to fetch it)"
            raise HeadwayError(f"cannot load the VLM {name_or_path!r}: {error}{hint}") from None
        return cls(model.to(default_device(device)).eval(), processor, **kwargs)

    def ask(self, image: np.ndarray, prompt: str) -> str:
        """The model's raw answer to `prompt` about one RGB image (greedy decoding)."""
        import torch
        from PIL import Image

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise HeadwayError(f"point prompting takes one (H, W, 3) RGB image, got shape {image.shape}")
        messages = [{"role": "user", "content": [{"type": "image", "image": Image.fromarray(image.astype(np.uint8))}, {"type": "text", "text": prompt}]}]
        inputs = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        device = getattr(self.model, "device", None)
        if device is not None:
            inputs = inputs.to(device)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    def point(self, image: np.ndarray, keypoint: str, instruction: str | None = None, description: str | None = None) -> PointAnswer:
        """Ask for `keypoint` in `image` and parse the answer (the raw text is kept in the result)."""
        prompt = build_prompt(keypoint, instruction, description)
        answer = self.ask(image, prompt)
        height, width = np.asarray(image).shape[:2]
        return parse_points(answer, (width, height))


# Answers recorded in the formats VLMs actually return (RoboPoint, Molmo, Qwen2.5-VL), with
# what parsing must make of them; `bench/keypoints.py` scores the parser on these.
RECORDED_ANSWERS: list[tuple[str, str, list[tuple[float, float]] | None]] = [
    ("[(0.56, 0.48), (0.58, 0.50), (0.55, 0.52)]", OK, [(0.56, 0.48), (0.58, 0.50), (0.55, 0.52)]),
    ("[(0.412, 0.633)]", OK, [(0.412, 0.633)]),
    ("The grasp point is at [(0.31, 0.72)].", OK, [(0.31, 0.72)]),
    ("```\n[(0.25, 0.5), (0.3, 0.55)]\n```", OK, [(0.25, 0.5), (0.3, 0.55)]),
    ("[(.5, .25)]", OK, [(0.5, 0.25)]),
    ("[[0.1, 0.2], [0.15, 0.22]]", OK, [(0.1, 0.2), (0.15, 0.22)]),
    ("(0.9,0.05),(0.88,0.07)", OK, [(0.9, 0.05), (0.88, 0.07)]),
    ('<point x="56.2" y="48.1" alt="grasp point">grasp point</point>', OK, [(0.562, 0.481)]),
    ('<points x1="10.0" y1="20.0" x2="30.5" y2="40.5" alt="cubes">cubes</points>', OK, [(0.1, 0.2), (0.305, 0.405)]),
    ('```json\n[{"point_2d": [42, 21], "label": "handle"}]\n```', OK, [(42.5 / 84, 21.5 / 84)]),
    ("[(0.56, 1.48)]", OUT_OF_RANGE, None),
    ("[(45, 60), (47, 61)]", OUT_OF_RANGE, None),
    ("[(-0.1, 0.4)]", OUT_OF_RANGE, None),
    ('<point x="156.2" y="48.1">p</point>', OUT_OF_RANGE, None),
    ("I cannot see a cube in this image.", UNPARSABLE, None),
    ("[(0.56, )]", UNPARSABLE, None),
    ("The point is at x=0.4, y=0.3", UNPARSABLE, None),
    ('<point y="20">p</point>', UNPARSABLE, None),
    ("", EMPTY, None),
    ("   ", EMPTY, None),
]


def score_parser(recorded: list[tuple[str, str, list | None]] = RECORDED_ANSWERS, image_size: tuple[int, int] = (84, 84)) -> dict:
    """How many recorded answers parse to the expected status and points (within 1e-6)."""
    correct = 0
    failures = []
    for answer, status, points in recorded:
        result = parse_points(answer, image_size)
        good = result.status == status and (points is None or np.allclose(result.points, points, atol=1e-6))
        correct += good
        if not good:
            failures.append({"answer": answer, "expected": status, "got": result.status, "problem": result.problem})
    return {"answers": len(recorded), "correct": correct, "accuracy": correct / max(len(recorded), 1), "failures": failures}
