"""Where each term of a fused keypoint potential shapes: how much stage-aware progress, keypoint
closeness Phi_kp and their fusion rise within each stage on a dataset's successful episodes.

Under potential-based shaping, the rise of the potential within a stage is the shaping reward paid
for completing it. A term that is flat in a stage (Phi_kp while the gripper closes: no keypoint
moves) dilutes the other there, so fusion weights are best set knowing this table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headway.datasets.reader import DatasetReader
from headway.errors import HeadwayError
from headway.perception.preprocess import resize_frames
from headway.reward.keypoint_reward import KeypointRewardModel

TERMS = ("progress", "phi_kp", "fused")


def rise_by_stage(values: np.ndarray, stages: np.ndarray, stage_count: int) -> np.ndarray:
    """Per stage, the summed change of `values` over the steps that start in that stage."""
    steps = np.diff(np.asarray(values, dtype=np.float64))
    return np.bincount(np.asarray(stages, dtype=int)[:-1], weights=steps, minlength=stage_count)[:stage_count]


def _succeeded(reader: DatasetReader, index: int) -> bool:
    outcome = reader.outcome(index)
    if outcome is not None:
        return outcome.success
    arrays = reader.episode(index, decode=False).arrays
    flag = arrays.get("next.success", arrays.get("next.reward"))
    return flag is not None and bool(np.any(np.asarray(flag) > 0))


def fusion_by_stage(model: KeypointRewardModel, dataset: Path, episodes: int = 8) -> dict:
    """Mean rise per episode of each term within each stage (the stage the progress model reads), over
    the successful episodes among the first `episodes` of `dataset`, scored as in RL: frames at the
    model's size."""
    reader = DatasetReader(Path(dataset))
    missing = [v for v in model.views if v not in reader.views]
    if missing:
        raise HeadwayError(f"{dataset} has no camera {', '.join(missing)} that the fused reward reads; its cameras: {', '.join(reader.views)}")
    successes = [i for i in range(min(episodes, reader.num_episodes)) if _succeeded(reader, i)]
    if not successes:
        raise HeadwayError(
            f"the first {episodes} episodes of {dataset} have no success to measure the fused potential on; "
            "measure on more episodes or on a dataset with successes"
        )
    stage_count = len(model.stage_names)
    totals = {term: np.zeros(stage_count) for term in TERMS}
    for index in successes:
        episode = reader.episode(index, views=list(model.views))
        images = {v: resize_frames(episode.images[v], model.image_size) for v in model.views}
        details = model.score_details(images, episode.task, episode.state)
        stages = details["progress"].stage
        for term, values in (("progress", details["progress"].progress), ("phi_kp", details["phi_kp"]), ("fused", details["fused"])):
            totals[term] += rise_by_stage(values, stages, stage_count)
    return {
        "episodes": len(successes),
        "stages": {stage: {term: float(totals[term][k] / len(successes)) for term in TERMS} for k, stage in enumerate(model.stage_names)},
    }


def render_fusion_report(report: dict) -> str:
    """A markdown table of the rises, and the stages where fusion shapes less than progress alone."""
    lines = [
        f"Rise of each potential within each stage, mean over {report['episodes']} successful episodes:",
        "| stage | progress | keypoint closeness Phi_kp | fused |",
        "|---|---|---|---|",
    ]
    lines += [f"| {stage} | {r['progress']:.3f} | {r['phi_kp']:.3f} | {r['fused']:.3f} |" for stage, r in report["stages"].items()]
    weaker = [stage for stage, r in report["stages"].items() if r["fused"] < r["progress"]]
    if weaker:
        lines.append(
            f"The fused potential shapes less than progress alone in: {', '.join(weaker)} (keypoint closeness rises "
            "less there); a larger progress weight keeps more of progress's shaping in those stages."
        )
    return "\n".join(lines)
