"""The demo's one-page report: every stage's figures, curves and videos, from the stage results."""

from __future__ import annotations

import html
from pathlib import Path

from headway.report import html_table, inline_image, inline_video, write_report


def _images(paths: list[Path] | list[str], limit: int) -> str:
    return "".join(inline_image(Path(p)) for p in list(paths)[:limit] if Path(p).exists())


def write_demo_report(config, paths, results: dict[str, dict], stages: dict[str, dict]) -> Path:
    """Write `<out>/report.html` from the stage results of `headway.demo.run_demo`."""
    from headway.reward.evaluate import METRIC_KEYS

    info = results["summarise the dataset"]
    reward = results["evaluate the reward model on held-out episodes"]
    keypoints = results["evaluate the keypoint model on held-out episodes"]
    labels = results["label the training dataset"]
    policies = results["train and evaluate BC and RA-BC policies"]
    rl = results["fine-tune with online RL: reward model + pbrs vs sparse"]
    rollout = results["roll out through the hardware layer with the live reward"]

    outcome_rows = {m: {"episodes": c["episodes"], "succeeded": c["successes"]} for m, c in info["outcomes_by_mode"].items()}
    reward_rows = {"headway PRM": reward["metrics"], **reward["baselines"]}
    triangulation = {name: {"median cm": row["median"], "p90 cm": row["p90"], "points": row["n"]} for name, row in keypoints["triangulation"].items()}
    per_view = {view: {"median px": row["median"], "p90 px": row["p90"], "points": row["n"]} for view, row in keypoints["per_view"].items()}
    policy_rows = {name: {k: row[k] for k in ("success_rate", "mean_return", "mean_dense_return", "mean_length")} for name, row in _runs(policies).items()}
    rl_rows = {name: {"final success rate": row["final_success_rate"], "success AUC": row["success_auc"]} for name, row in _runs(rl).items()}
    rollout_row = {
        "simulated arm": {
            "success rate (reward model)": rollout.get("success_rate"),
            "true success rate": rollout.get("true_success_rate"),
            "mean final progress": rollout.get("mean_final_progress"),
            "safety interventions": rollout.get("interventions_total"),
        }
    }
    timing = {name: {"seconds": float(result.get("seconds", 0.0))} for name, result in stages.items()}
    video = rollout.get("video")
    sections = [
        (
            "Data",
            f"<p>{info['episodes']} training episodes ({info['frames']} frames) of <b>{html.escape(config.task)}</b>, views "
            f"{', '.join(info['views'])}, {info['fps']:g} fps; held-out episodes use other seeds.</p>"
            + html_table(outcome_rows, ["episodes", "succeeded"]),
        ),
        (
            "Stage-aware reward model on held-out episodes",
            f"<p>{reward['episodes']} held-out episodes, the same episodes for every row. The last row scores the "
            "annotation targets themselves: the ceiling of a model trained on those labels.</p>"
            + html_table(reward_rows, list(METRIC_KEYS)),
        ),
        ("Progress of held-out episodes", _images(sorted((paths.plots / "progress").glob("*.png")), 6)),
        (
            "Keypoint model on held-out episodes",
            "<p>2D error on visible points per view, and 3D error after triangulating across views.</p>"
            + html_table(per_view, ["median px", "p90 px", "points"])
            + html_table(triangulation, ["median cm", "p90 cm", "points"])
            + _images(sorted((paths.plots / "keypoints").glob("*.png")), 3),
        ),
        (
            "Labelled training dataset",
            f"<p>{labels['frames']} frames labelled at {labels['frames_per_second']:,.0f} frames/s; mean final progress "
            f"of successful episodes {_number(labels['mean_final_progress_success'])}, of failed ones "
            f"{_number(labels['mean_final_progress_failure'])}. LeRobot's RA-BC reads "
            f"<code>{html.escape(labels['progress_path'])}</code>.</p>" + _images([p for p in labels["plots"] if str(p).endswith(".png")], 2),
        ),
        ("Behaviour cloning: plain vs reward-aligned (RA-BC)", html_table(policy_rows, ["success_rate", "mean_return", "mean_dense_return", "mean_length"])),
        (
            "Online RL from the RA-BC policy: reward model + potential-based shaping vs sparse reward",
            html_table(rl_rows, ["final success rate", "success AUC"]) + _images([row["learning_curve"] for row in _runs(rl).values()], 2),
        ),
        (
            "Rollout through the hardware layer (simulated arm, live reward)",
            html_table(rollout_row, list(rollout_row["simulated arm"]))
            + (inline_video(Path(video)) if video and Path(video).exists() else ""),
        ),
        ("Time per stage", html_table(timing, ["seconds"])),
    ]
    return write_report(paths.out / "report.html", f"headway demo: {config.task} ({config.size})", sections)


def _runs(result: dict) -> dict[str, dict]:
    """A stage result's per-run entries (the stage log adds scalars such as `seconds`)."""
    return {name: row for name, row in result.items() if isinstance(row, dict)}


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
