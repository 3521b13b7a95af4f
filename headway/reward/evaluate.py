"""Honest evaluation of a reward model on held-out episodes, with baselines on the same episodes.

Metrics (keys as in the JSON): `voc` (mean Spearman of progress with time over expert episodes),
`stage_accuracy` and `progress_mae` (all annotated frames, against the training targets: SARM's
from the annotations, failure tails lowered to the recorded scene where it fell back),
`success_auroc` / `success_f1` (final-frame success probability against the
episode outcome), `kendall_tau` (tau_a between each episode's predicted return -- mean progress
over the task horizon, the episode padded with its final value -- and its true quality),
`succ_fail_gap` (mean final progress of successes minus failures), `frames_per_second`
(offline scoring throughput, multi-view frames per second).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward import metrics
from headway.reward.frame_rate import score_recorded
from headway.reward.interface import RewardOutput
from headway.reward.labels import StagePrior, stage_targets

TARGETS_ROW = "annotation targets (ceiling)"
METRIC_KEYS = (
    "voc",
    "stage_accuracy",
    "progress_mae",
    "success_auroc",
    "success_f1",
    "kendall_tau",
    "succ_fail_gap",
    "frames_per_second",
)


@dataclass
class ScoredEpisode:
    index: int
    mode: str
    success: bool
    quality: float
    output: RewardOutput
    target_stage: np.ndarray | None
    target_progress: np.ndarray | None
    dense_reward: np.ndarray | None = None  # robosuite's shaped reward, when the dataset recorded it


def score_dataset(model, root: Path, views: list[str] | None = None, progress: bool = True):
    """Score every episode of a dataset; returns the scored episodes and the scoring seconds."""
    from tqdm import tqdm

    reader = DatasetReader(root)
    views = list(views) if views else [v for v in model.views if v in reader.views]
    model.check_views(views)
    missing = [v for v in views if v not in reader.views]
    if missing:
        raise HeadwayError(f"{root} has no camera {missing}; its cameras: {reader.views}")
    # zero-shot models (GVL, lerobot's) have no stages: their targets come from the dataset's prior
    prior = target_prior(model, root)
    stage_names = prior.names
    scored, seconds = [], 0.0
    for index in tqdm(range(reader.num_episodes), desc=f"score {Path(root).name}", disable=not progress):
        episode = reader.episode(index, views=views)
        images = {view: resize_frames(frames, model.image_size) for view, frames in episode.images.items()}
        started = time.perf_counter()
        output = score_recorded(model, images, episode.task, fps=reader.fps)
        seconds += time.perf_counter() - started
        target_stage = target_progress = None
        if episode.subtasks is not None:
            stage, tau = stage_targets(episode.subtasks, episode.length, stage_names, index, scene=episode.scene)
            target_stage, target_progress = stage, prior.progress(stage, tau)
        outcome = episode.outcome
        success = outcome.success if outcome else bool(episode.subtasks and len(episode.subtasks) == len(stage_names))
        scored.append(
            ScoredEpisode(
                index,
                outcome.mode if outcome else "unknown",
                success,
                outcome.quality if outcome else float(success),
                output,
                target_stage,
                target_progress,
                episode.arrays.get("next.robosuite_dense_reward"),
            )
        )
    return scored, seconds


def target_prior(model, root: Path) -> StagePrior:
    """The stage prior targets are measured against: the model's own, or for a model without stages
    the dataset's (its annotated proportions)."""
    if model.stage_names:
        return StagePrior(model.stage_names, tuple(model.config.stage_proportions))
    proportions = DatasetReader(root).stage_proportions()
    if not proportions:
        raise HeadwayError("this reward model has no stages and the dataset records no stage prior "
                           "(meta/temporal_proportions_sparse.json); annotate the dataset to evaluate progress")
    return StagePrior.from_mapping(proportions)


def compute_metrics(episodes: list[ScoredEpisode], horizon: int, seconds: float | None = None) -> dict[str, float]:
    """The metric table row for a list of scored episodes."""
    experts = [e for e in episodes if e.mode == "expert"] or [e for e in episodes if e.success]
    annotated = [e for e in episodes if e.target_stage is not None]
    final_progress = np.array([e.output.progress[-1] for e in episodes])
    final_success = np.array([e.output.success[-1] for e in episodes])
    outcomes = np.array([e.success for e in episodes])
    has_stages = bool(episodes) and "stage" not in episodes[0].output.absent
    has_success = bool(episodes) and "success" not in episodes[0].output.absent
    returns = np.array([np.concatenate([e.output.progress, np.full(max(horizon - len(e.output), 0), e.output.progress[-1])])[:horizon].mean() for e in episodes])
    frames = sum(len(e.output) for e in episodes)
    return {
        "voc": float(np.mean([metrics.value_order_correlation(e.output.progress) for e in experts])) if experts else float("nan"),
        "stage_accuracy": metrics.stage_accuracy(
            np.concatenate([e.output.stage for e in annotated]), np.concatenate([e.target_stage for e in annotated])
        )
        if annotated and has_stages
        else float("nan"),
        "progress_mae": metrics.mean_absolute_error(
            np.concatenate([e.output.progress for e in annotated]), np.concatenate([e.target_progress for e in annotated])
        )
        if annotated
        else float("nan"),
        "success_auroc": metrics.auroc(final_success, outcomes) if has_success else float("nan"),
        "success_f1": metrics.f1_score(final_success > 0.5, outcomes) if has_success else float("nan"),
        "kendall_tau": metrics.kendall_tau_a(returns, np.array([e.quality for e in episodes])),
        "succ_fail_gap": metrics.succ_fail_gap(final_progress, outcomes),
        "frames_per_second": float(frames / seconds) if seconds else float("nan"),
    }


def baseline_outputs(episodes: list[ScoredEpisode], prior: StagePrior) -> dict[str, list[ScoredEpisode]]:
    """The same episodes scored by linear-in-time progress, by robosuite's dense reward (if recorded),
    and by the annotation targets themselves: the ceiling any model trained on those labels can reach
    on the progress-based metrics (its success column is "progress complete")."""
    rows: dict[str, list[ScoredEpisode]] = {"linear-in-time": []}
    # Causal linear-in-time: elapsed time over a typical successful episode's length (one number for
    # the whole set), never the episode's own length, which would tell the baseline when it ends.
    lengths = [len(e.output) for e in episodes if e.success] or [len(e.output) for e in episodes]
    typical_length = float(np.median(lengths))
    has_dense = all(e.dense_reward is not None for e in episodes)
    if has_dense:
        rows["robosuite dense reward"] = []
    has_targets = all(e.target_progress is not None for e in episodes)
    if has_targets:
        rows[TARGETS_ROW] = []
    for scored in episodes:
        length = len(scored.output)
        linear = np.clip(np.arange(length) / max(typical_length - 1, 1), 0, 1).astype(np.float32)
        candidates = {"linear-in-time": linear}
        if has_targets:
            candidates[TARGETS_ROW] = scored.target_progress.astype(np.float32)
        if has_dense:
            dense = scored.dense_reward.reshape(-1)
            candidates["robosuite dense reward"] = np.clip(np.concatenate([[0.0], dense[:-1]]), 0, 1).astype(np.float32)
        for name, progress in candidates.items():
            stage = scored.target_stage if name == TARGETS_ROW else prior.stage_and_tau(progress)[0]
            probs = np.eye(len(prior.names), dtype=np.float32)[stage]
            output = RewardOutput(progress, stage, probs, progress.copy(), np.zeros(length, np.float32))
            rows[name].append(replace(scored, output=output))
    return rows


def evaluate(model, roots: list[Path], views: list[str] | None = None, plots: Path | None = None, progress: bool = True) -> dict:
    """Metric table: the model and the baselines on the same episodes."""
    all_scored, seconds, baselines = [], 0.0, {}
    prior = target_prior(model, roots[0])
    horizon = 1
    for root in roots:
        scored, spent = score_dataset(model, root, views, progress)
        all_scored += scored
        seconds += spent
        horizon = max(horizon, max(len(e.output) for e in scored))
        for name, rows in baseline_outputs(scored, prior).items():
            baselines.setdefault(name, []).extend(rows)
        if plots is not None:
            plot_episodes(scored, Path(plots), Path(root).name, prior)
    table = {"model": compute_metrics(all_scored, horizon, seconds)}
    for name, rows in baselines.items():
        table[name] = compute_metrics(rows, horizon)
    return {
        "views": list(views) if views else list(model.views),
        "episodes": len(all_scored),
        "metrics": table["model"],
        "baselines": {k: v for k, v in table.items() if k != "model"},
    }


def render_table(report: dict) -> str:
    rows = {"headway PRM": report["metrics"], **report["baselines"]}
    header = f"{'':24}" + "".join(f"{k:>18}" for k in METRIC_KEYS)
    lines = [header]
    for name, values in rows.items():
        lines.append(f"{name:24}" + "".join(f"{values[k]:>18.3f}" for k in METRIC_KEYS))
    return "\n".join(lines)


def plot_episodes(scored: list[ScoredEpisode], folder: Path, prefix: str, prior: StagePrior, limit: int = 12) -> None:
    """One PNG per episode: predicted progress (with uncertainty) and success against the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for episode in scored[:limit]:
        out = episode.output
        t = np.arange(len(out))
        figure, axis = plt.subplots(figsize=(7, 3.2))
        axis.fill_between(t, out.progress - out.uncertainty, out.progress + out.uncertainty, alpha=0.2, color="C0")
        axis.plot(t, out.progress, color="C0", label="predicted progress")
        if episode.target_progress is not None:
            axis.plot(t, episode.target_progress, color="k", linestyle="--", label="annotated progress")
        axis.plot(t, out.success, color="C2", alpha=0.7, label="success probability")
        for boundary in prior.cumulative[1:-1]:
            axis.axhline(boundary, color="grey", linewidth=0.5)
        axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("frame")
        axis.set_title(f"{prefix} episode {episode.index} ({episode.mode}, {'success' if episode.success else 'failure'})")
        axis.legend(loc="lower right", fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / f"{prefix}_episode_{episode.index:04d}.png", dpi=90)
        plt.close(figure)
