"""Robustness report: one reward model's metrics on several held-out sets side by side, with the
change from the first (nominal) one, as a printed table, markdown, JSON and a PNG.

Rows are "conditions": a dataset scored as collected, or the nominal dataset scored with its task
said another way (`wordings`), recorded at another frame rate (`frame_rates`: the recording's
nearest frames, declared at that rate, which the model's scoring resamples to its own), with a robot
moving faster or slower (`speeds`: frames dropped or repeated at the same declared rate, which no
resampling undoes) or at another image size (`sizes`: frames down- or up-scaled to that size before
the model's own resize). Targets are issue 26's (checked only where measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headway.atomic import atomic_write_bytes, atomic_write_json
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward.evaluate import METRIC_KEYS, baseline_outputs, compute_metrics, score_dataset
from headway.reward.frame_rate import model_frame_rate, resample_indices, score_recorded
from headway.reward.interface import RewardOutput
from headway.reward.labels import StagePrior

REPORT_KEYS = tuple(k for k in METRIC_KEYS if k != "frames_per_second")
LOWER_IS_BETTER = {"progress_mae"}
# issue 26's targets under any single shift; the Succ-Fail gap is relative to its nominal value
TARGETS = {"stage_accuracy": 0.90, "progress_mae": 0.05, "success_auroc": 0.95, "kendall_tau": 0.75}
GAP_SHARE = 0.9
NOMINAL_TOLERANCE = 0.02


@dataclass(frozen=True)
class Condition:
    """One row: a dataset, maybe scored with another task text, frame rate, robot speed or image size."""

    label: str
    root: Path
    task_text: str | None = None
    fps: float | None = None
    size: int | None = None
    speed: float = 1.0


class ShiftedModel:
    """A reward model seen through a shift: another task text, the same motion recorded at another
    frame rate `fps` (the recording's nearest frames, declared at that rate, so the model's scoring
    sees them at its own rate), a robot `speed` times as fast (frames dropped or repeated at the
    recording's rate, which no resampling undoes), another image size.

    Outputs come back at the recording's frame rate (each recorded frame gets the score of the last
    shifted frame that shows it or an earlier frame), so the metrics compare with the same per-frame
    targets as the unshifted rows.
    """

    def __init__(self, model, task_text: str | None = None, fps: float | None = None, size: int | None = None, speed: float = 1.0) -> None:
        if fps is not None and speed != 1.0:
            raise HeadwayError("shift the frame rate or the robot's speed, not both at once")
        self._model = model
        self.task_text = task_text
        self.fps = fps
        self.size = size
        self.speed = float(speed)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def score_episode(self, images, task, state=None, batch_size: int = 256) -> RewardOutput:
        """As recorded at the model's own frame rate."""
        return self.score_recorded(images, task, state, batch_size, model_frame_rate(self._model))

    def score_recorded(self, images, task, state=None, batch_size: int = 256, fps: float | None = None) -> RewardOutput:
        task = self.task_text if self.task_text is not None else task
        length = len(next(iter(images.values())))
        if self.size is not None:
            images = {v: resize_frames(resize_frames(f, self.size), self._model.image_size) for v, f in images.items()}
        if self.fps is not None:
            if fps is None:
                raise HeadwayError("a frame-rate shift needs the recording's frame rate; this model has none")
            picks, _ = resample_indices(length, fps, self.fps, nearest=True)  # what a camera at self.fps would have caught
            fps = self.fps
        elif self.speed != 1.0:
            picks, _ = resample_indices(length, self.speed, 1.0)  # shifted frame j shows recorded time j * speed
        else:
            return score_recorded(self._model, images, task, state, batch_size, fps)
        state = None if state is None else state[picks]
        output = score_recorded(self._model, {v: f[picks] for v, f in images.items()}, task, state, batch_size, fps)
        return output.take(np.searchsorted(picks, np.arange(length), side="right") - 1)  # the last shifted frame showing each or an earlier one


def conditions_from(
    roots: list[Path],
    labels: list[str] | None = None,
    task_text: str | None = None,
    wordings: list[str] = (),
    frame_rates: list[float] = (),
    sizes: list[int] = (),
    speeds: list[float] = (),
) -> list[Condition]:
    """The report's rows: each dataset (under `task_text` when given), then the first dataset under
    each extra wording, frame rate, robot speed and size."""
    roots = [Path(r) for r in roots]
    if not roots:
        raise HeadwayError("give at least one --dataset")
    if labels and len(labels) != len(roots):
        raise HeadwayError(f"--label given {len(labels)} times for {len(roots)} datasets; give one per --dataset or none")
    names = list(labels) if labels else _unique_names(roots)
    rows = [Condition(name, root, task_text) for name, root in zip(names, roots)]
    for text in wordings:
        if not text.strip():
            raise HeadwayError("--wording needs a task text")
        rows.append(Condition(f"{names[0]} / task: {text!r}", roots[0], text))
    for fps in frame_rates:
        if not 1.0 <= fps <= 240.0:
            raise HeadwayError(f"--fps is the frame rate to record at, between 1 and 240, got {fps}")
        rows.append(Condition(f"{names[0]} / {fps:g} fps", roots[0], task_text, fps=fps))
    for speed in speeds:
        if not 0.2 <= speed <= 5.0 or speed == 1.0:
            raise HeadwayError(f"--speed is the robot's speed relative to the recording, between 0.2 and 5 and not 1, got {speed}")
        rows.append(Condition(f"{names[0]} / robot {speed:g}x as fast", roots[0], task_text, speed=speed))
    for size in sizes:
        if not 8 <= size <= 1024:
            raise HeadwayError(f"--shift-size must be between 8 and 1024 pixels, got {size}")
        rows.append(Condition(f"{names[0]} / {size} px", roots[0], task_text, size=size))
    return rows


def _unique_names(roots: list[Path]) -> list[str]:
    names = [r.name for r in roots]
    if len(set(names)) < len(names):
        names = [f"{r.parent.name}/{r.name}" for r in roots]
    if len(set(names)) < len(names):
        names = [str(r) for r in roots]
    return names


def robustness_report(model, conditions: list[Condition], views: list[str] | None = None, progress: bool = True, baselines: bool = True) -> dict:
    """Metrics per condition (the model, and the baselines on the same episodes) and the change from
    the first condition, with issue 26's targets checked for the model."""
    prior = StagePrior(model.stage_names, tuple(model.config.stage_proportions))
    rows = []
    for condition in conditions:
        shifted = ShiftedModel(model, condition.task_text, condition.fps, condition.size, condition.speed)
        scored, seconds = score_dataset(shifted, condition.root, views, progress)
        horizon = max(len(e.output) for e in scored)
        row = {
            "label": condition.label,
            "dataset": str(condition.root),
            "task_text": condition.task_text,
            "fps": condition.fps,
            "size": condition.size,
            "speed": condition.speed,
            "episodes": len(scored),
            "metrics": compute_metrics(scored, horizon, seconds),
            # what the wording test reads: a paraphrase should keep these, another task drop them
            "final_progress": {
                "successes": _mean([e.output.progress[-1] for e in scored if e.success]),
                "failures": _mean([e.output.progress[-1] for e in scored if not e.success]),
            },
        }
        if baselines:
            row["baselines"] = {
                name: {k: v for k, v in compute_metrics(rows_, horizon).items() if k != "frames_per_second"}
                for name, rows_ in baseline_outputs(scored, prior).items()
            }
        rows.append(row)
    nominal = rows[0]["metrics"]
    for index, row in enumerate(rows):
        row["change"] = {k: row["metrics"][k] - nominal[k] for k in REPORT_KEYS}
        row["worse_by"] = {k: (v if k in LOWER_IS_BETTER else -v) for k, v in row["change"].items()}
        row["targets"] = check_targets(row["metrics"], nominal, is_nominal=index == 0)
    return {"views": list(views) if views else list(model.views), "nominal": rows[0]["label"], "rows": rows}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def check_targets(values: dict, nominal: dict, is_nominal: bool = False) -> dict[str, bool | None]:
    """Issue 26's per-shift targets (None where the metric is NaN)."""
    checks: dict[str, bool | None] = {}
    for key, bound in TARGETS.items():
        value = values[key]
        checks[key] = None if not math.isfinite(value) else (value <= bound if key in LOWER_IS_BETTER else value >= bound)
    gap, nominal_gap = values["succ_fail_gap"], nominal["succ_fail_gap"]
    checks["succ_fail_gap"] = None if not (math.isfinite(gap) and math.isfinite(nominal_gap)) else gap >= GAP_SHARE * nominal_gap
    checks["all"] = None if any(v is None for v in checks.values()) else all(checks.values())
    return checks


def _format(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def render_table(report: dict) -> str:
    """Plain text: each metric's value per condition and, after the first, its change from the nominal."""
    width = max(len(r["label"]) for r in report["rows"]) + 2
    header = f"{'condition':{width}}" + "".join(f"{k:>22}" for k in REPORT_KEYS) + f"{'targets':>10}"
    lines = [header]
    for index, row in enumerate(report["rows"]):
        cells = []
        for key in REPORT_KEYS:
            value = _format(row["metrics"][key])
            if index:
                value += f" ({_format(row['change'][key], signed=True)})"
            cells.append(f"{value:>22}")
        met = row["targets"]["all"]
        lines.append(f"{row['label']:{width}}" + "".join(cells) + f"{('n/a' if met is None else 'met' if met else 'missed'):>10}")
    lines.append(
        "values (change from the first row); targets: stage acc >= 0.90, MAE <= 0.05, AUROC >= 0.95, "
        "Kendall >= 0.75, Succ-Fail gap >= 0.9 x nominal"
    )
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    head = "| condition | " + " | ".join(REPORT_KEYS) + " | targets |"
    lines = [head, "|" + "---|" * (len(REPORT_KEYS) + 2)]
    for index, row in enumerate(report["rows"]):
        cells = []
        for key in REPORT_KEYS:
            cell = _format(row["metrics"][key])
            if index:
                cell += f" ({_format(row['change'][key], signed=True)})"
            cells.append(cell)
        met = row["targets"]["all"]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {'n/a' if met is None else 'met' if met else 'missed'} |")
    return "\n".join(lines)


def plot_report(report: dict, path: Path, title: str | None = None) -> None:
    """One panel per metric: a bar per condition, the nominal bar's level dashed, targets dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    figure, axes = plt.subplots(1, len(REPORT_KEYS), figsize=(2.4 * len(REPORT_KEYS), 3.6), sharey=False)
    colours = [f"C{i % 10}" for i in range(len(rows))]
    for axis, key in zip(axes, REPORT_KEYS):
        values = [row["metrics"][key] for row in rows]
        axis.bar(range(len(rows)), [v if math.isfinite(v) else 0 for v in values], color=colours)
        if math.isfinite(values[0]):
            axis.axhline(values[0], color="k", linestyle="--", linewidth=0.8)
        if key in TARGETS:
            axis.axhline(TARGETS[key], color="r", linestyle=":", linewidth=0.8)
        axis.set_title(key, fontsize=8)
        axis.set_xticks([])
        axis.tick_params(labelsize=7)
    figure.legend(
        [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours], [row["label"] for row in rows],
        loc="lower center", ncol=min(len(rows), 4), fontsize=7, frameon=False,
    )
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0.06 + 0.04 * ((len(rows) - 1) // 4), 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(report: dict, out: Path, title: str | None = None) -> list[Path]:
    """`out`.json, `out`.md and `out`.png (out is a path prefix)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".json"), out.with_suffix(".md"), out.with_suffix(".png")]
    atomic_write_json(paths[0], report)
    atomic_write_bytes(paths[1], (render_markdown(report) + "\n").encode())
    plot_report(report, paths[2], title)
    return paths
