"""Keypoint affordances from several views: 2D error per view, 3D error after triangulation with two
and three views, and the VLM answer parser on recorded answers.

    uv run python bench/keypoints.py                       # collects lift with three views, trains, evaluates
    uv run python bench/keypoints.py --train DIR --eval DIR [--minutes 15]

Training and held-out data come from different seeds. Views: agentview (in front, 45 degrees
down), sideview (from the robot's side, nearly square to agentview) and frontview (in front, low):
frontview looks from nearly the same direction as agentview, so it adds the least.
KAGI's setup (one top-down-like view plus one side view; KAGI asks a large VLM for the 2D points)
is the agentview + sideview row, with headway's keypoint model in place of the VLM.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

VIEWS = ("agentview", "sideview", "frontview")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=None, help="training dataset (default: collect one)")
    parser.add_argument("--eval", type=Path, default=None, help="held-out dataset (default: collect one)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_keypoints"))
    parser.add_argument("--train-episodes", type=int, default=24)
    parser.add_argument("--eval-episodes", type=int, default=8)
    parser.add_argument("--views", default=",".join(VIEWS))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from headway.datasets.collect import CollectConfig, collect
    from headway.perception.keypoint_model import KeypointModel
    from headway.perception.keypoint_train import KeypointTrainConfig, evaluate_keypoints, render_report, train_keypoint_model
    from headway.perception.point_prompting import score_parser

    views = tuple(v.strip() for v in args.views.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    timings = {}
    train, held_out = args.train, args.eval
    for name, seed, episodes in (("train", 0, args.train_episodes), ("eval", 1, args.eval_episodes)):
        if (train if name == "train" else held_out) is not None:
            continue
        out = args.work / f"lift_{name}"
        if not (out / "meta" / "info.json").exists():
            started = time.perf_counter()
            print(collect(CollectConfig(task="lift", episodes=episodes, views=views, image_size=84, seed=seed, out=out), resume=True).render())
            timings[f"collect_{name}_s"] = time.perf_counter() - started
        if name == "train":
            train = out
        else:
            held_out = out

    model_dir = args.work / "keypoints"
    if not (model_dir / "config.json").exists() or (model_dir / "train_state.pt").exists():
        summary = train_keypoint_model(
            KeypointTrainConfig(datasets=[train], out=model_dir, views=views, steps=args.steps, max_minutes=args.minutes, width=args.width),
            resume=True,
        )
        (model_dir / "train_state.pt").unlink(missing_ok=True)  # finished: the bench reuses the model next time
        timings["train_s"] = summary["seconds"]
        print(f"trained {summary['steps']} steps on {summary['frames']} frames in {summary['seconds']:.0f} s, final loss {summary['final_loss']:.3f}")
    model = KeypointModel.load(model_dir, device="cpu")
    pairs = [(a, b) for i, a in enumerate(views) for b in views[i + 1 :]]
    report = evaluate_keypoints(model, held_out, view_sets=pairs + [views], plots=args.work / "plots")
    parser_score = score_parser()
    print()
    print(render_report(report))
    print()
    two = {name: row["median"] for name, row in report["triangulation"].items() if name.count("+") == 1}
    three = report["triangulation"]["+".join(views)]["median"]
    best_pair = min(two, key=two.get)
    print(f"3D median, best pair ({best_pair}): {two[best_pair]:.2f} cm; all three views: {three:.2f} cm")
    kagi = report["triangulation"].get("agentview+sideview")
    if kagi:
        print(f"KAGI's setup (top-down-like agentview + sideview, keypoints from headway's model): {kagi['median']:.2f} cm median")
    print(f"VLM answer parser: {parser_score['correct']}/{parser_score['answers']} recorded answers read as expected")
    result = {"report": report, "parser": parser_score, "timings": timings, "train": str(train), "eval": str(held_out)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
