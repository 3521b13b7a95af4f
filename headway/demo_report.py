"""The demo's one-page report: every stage's figures, curves and videos, from the stage results."""

from __future__ import annotations

import html
from pathlib import Path

from headway.report import html_table, inline_image, inline_video, write_report


def _images(paths: list[Path] | list[str], limit: int) -> str:
    return "".join(inline_image(Path(p)) for p in list(paths)[:limit] if Path(p).exists())


def write_demo_report(config, paths, results: dict[str, dict], stages: dict[str, dict]) -> Path:
    """Write `<out>/report.html` from the stage results of `headway.demo.run_demo`."""
    from headway.reward.evaluate import METRIC_KEYS  # deferred: reward.evaluate loads pandas/pyarrow/scipy

    info = results["summarise the dataset"]
    reward = results["evaluate the reward model on held-out episodes"]
    keypoints = results["evaluate the keypoint model on held-out episodes"]
    labels = results["label the training dataset"]
    policies = results["train and evaluate BC, RA-BC and IQL policies"]
    rl = results["fine-tune with online RL: reward model + pbrs vs sparse"]
    rollout = results["roll out through the hardware layer with the live reward"]

    outcome_rows = {m: {"episodes": c["episodes"], "succeeded": c["successes"]} for m, c in info["outcomes_by_mode"].items()}
    reward_rows = {"headway PRM": reward["metrics"], **reward["baselines"]}
    triangulation = {name: {"median cm": row["median"], "p90 cm": row["p90"], "points": row["n"]} for name, row in keypoints["triangulation"].items()}
    per_view = {view: {"median px": row["median"], "p90 px": row["p90"], "points": row["n"]} for view, row in keypoints["per_view"].items()}
    policy_rows = {name: {k: row[k] for k in ("success_rate", "mean_return", "mean_dense_return", "mean_length")} for name, row in _runs(policies).items()}
    rl_rows = {name: {"start success rate": row["start_success_rate"], "final success rate": row["final_success_rate"], "success AUC": row["success_auc"]}
               for name, row in _runs(rl).items()}
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
        ("Policies from the labelled data: BC, reward-aligned BC (RA-BC) and IQL on the shaped reward", html_table(policy_rows, ["success_rate", "mean_return", "mean_dense_return", "mean_length"])),
        (
            "Online RL from a weak BC start: reward model + potential-based shaping vs sparse reward",
            html_table(rl_rows, ["start success rate", "final success rate", "success AUC"])
            + _images(sorted({row["learning_curve"] for row in _runs(rl).values()}), 1),
        ),
        (
            "Rollout through the hardware layer (simulated arm, live reward)",
            html_table(rollout_row, list(rollout_row["simulated arm"]))
            + (inline_video(Path(video)) if video and Path(video).exists() else ""),
        ),
        ("Time per stage", html_table(timing, ["seconds"])),
    ]
    return write_report(paths.out / "report.html", f"headway demo: {config.task} ({config.size})", sections)


def write_report_figure(config, paths, results: dict[str, dict]) -> Path:
    """`<out>/report.png`: the report's key figures on one picture (for a README or a chat)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reward = results["evaluate the reward model on held-out episodes"]
    policies = _runs(results["train and evaluate BC, RA-BC and IQL policies"])
    rl = _runs(results["fine-tune with online RL: reward model + pbrs vs sparse"])
    keypoints = results["evaluate the keypoint model on held-out episodes"]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5), gridspec_kw={"width_ratios": [1, 1.3, 1]})
    metrics = ("voc", "stage_accuracy", "success_auroc", "kendall_tau", "succ_fail_gap")
    rows = {"headway PRM": reward["metrics"], **reward["baselines"]}
    width = 0.8 / len(rows)
    for i, (name, row) in enumerate(rows.items()):
        axes[0, 0].bar([m + i * width for m in range(len(metrics))], [row[k] for k in metrics], width, label=name)
    axes[0, 0].set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], [k.replace("_", " ") for k in metrics], fontsize=8, rotation=20)
    axes[0, 0].set_title("reward model on held-out episodes")
    axes[0, 0].legend(fontsize=7)
    _picture(axes[0, 1], sorted((paths.plots / "progress").glob("*.png")), "progress of a held-out episode")
    triangulation = keypoints["triangulation"]
    axes[0, 2].bar(list(triangulation), [row["median"] for row in triangulation.values()], color="tab:purple")
    axes[0, 2].set_ylabel("median 3D error (cm)")
    axes[0, 2].set_title("keypoints triangulated across views")
    axes[0, 2].tick_params(axis="x", labelsize=7, rotation=15)
    axes[1, 0].bar(list(policies), [100 * row["success_rate"] for row in policies.values()], color=["tab:gray", "tab:green", "tab:blue"][: len(policies)])
    axes[1, 0].set_ylabel("success (%)")
    axes[1, 0].set_title("policies from the labelled data")
    for name, row in rl.items():
        axes[1, 1].plot(row["eval_steps"], [100 * v for v in row["eval_success"]], marker="o", label=name)
    axes[1, 1].set_xlabel("environment steps")
    axes[1, 1].set_ylabel("success (%)")
    axes[1, 1].set_title("online RL from a weak BC start")
    axes[1, 1].legend(fontsize=8)
    times = {name: result.get("seconds", 0.0) / 60 for name, result in results.items()}
    axes[1, 2].barh(list(times)[::-1], list(times.values())[::-1], color="tab:orange")
    axes[1, 2].set_xlabel("minutes")
    axes[1, 2].set_title("time per stage")
    axes[1, 2].tick_params(axis="y", labelsize=6)
    figure.suptitle(f"headway demo: {config.task} ({config.size})")
    figure.tight_layout()
    path = paths.out / "report.png"
    temporary = path.with_name(".report.png.tmp.png")
    figure.savefig(temporary, dpi=80)
    plt.close(figure)
    temporary.replace(path)
    return path


def _picture(axis, candidates: list[Path], title: str) -> None:
    import matplotlib.image

    axis.axis("off")
    axis.set_title(title)
    if candidates:
        axis.imshow(matplotlib.image.imread(candidates[0]))


def _runs(result: dict) -> dict[str, dict]:
    """A stage result's per-run entries (the stage log adds scalars such as `seconds`)."""
    return {name: row for name, row in result.items() if isinstance(row, dict)}


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
