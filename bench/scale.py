"""Scale-out bench: labelling and collection, local against Ray (`--executor ray`) on this machine, in
one run, then a DROID-sized labelling estimate from the measured per-worker rates.

    cd /work/main && uv run python bench/scale.py [--dataset DIR --model CKPT] [--collect-episodes 4]
        [--label-episodes 12] [--work DIR] [--json PATH]

Without --dataset/--model it uses its own in --work (default /tmp/headway_scale_bench): a lift
dataset (two 84x84 views) collected once with `headway.datasets.collect`, and an untrained reward
model of the default architecture (its speed is a trained one's; no training needed).

Figures (frames = dataset time steps, both views each):
  per-worker rates  one core, measured in this process: decode (`DatasetReader.episode`), inference
                    (`score_episode`, 1 torch thread), staging (`stage_scores`, per episode on the driver) and
                    assembly (`assemble_labels`, the driver's final pass);
  labelling         `label_dataset` local (default threads) and on Ray with 1 and 2 workers (1 torch
                    thread each): decode + score + stage frames/s, start-up (connecting to Ray, the
                    workers loading the model) reported apart and left out of the rates;
  collection        rollout + staging episodes/s, one process (simulator built before the clock)
                    against 2 Ray workers (simulators built during warm-up, left out);
  DROID table       27 M frames x 2 views labelled by N CPU workers (1 core inference + its own
                    decode beside it each): wall time = frames / min(N x per-worker rate, driver
                    staging rate) + assembly, and which stage bounds it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import simulated_dataset  # noqa: E402  (bench/ on sys.path)
from machine import load_note  # noqa: E402

DROID_FRAMES = 27_000_000
DROID_EPISODES = 76_000
WORKER_COUNTS = (1, 8, 64, 512)


def default_model(out: Path, views: tuple[str, ...]) -> Path:
    """An untrained stage reward model of the default architecture (84x84, conv encoder), made once."""
    if (out / "config.json").exists():
        return out
    import torch

    from headway.reward.stage_model import StageModelConfig, StageRewardNet
    from headway.reward.stage_reward import StageRewardModel

    torch.manual_seed(0)
    config = StageModelConfig(views=views, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.4, 0.2, 0.4))
    StageRewardModel(StageRewardNet(config), device="cpu").save(out)
    return out


def per_worker_rates(dataset: Path, model_path: Path, work: Path) -> dict:
    """Decode, inference, staging and assembly rates of one core, each timed alone."""
    from headway.reward.label_assembly import assemble_labels
    from headway.reward.label_inputs import load_model, match_views
    from headway.reward.label_scoring import episode_file, score_episode, stage_scores
    from headway.datasets.reader import DatasetReader
    from headway.runtime import torch_threads

    reader = DatasetReader(dataset)
    model = load_model(model_path, "cpu")
    mapping = match_views(tuple(model.views), reader.camera_keys, {})
    keys = list(mapping.values())
    episodes = list(range(reader.num_episodes))
    reader.episode(0, keys)  # warm PyAV and the file cache
    decoded, decode_s = [], 0.0
    for index in episodes:
        started = time.perf_counter()
        decoded.append(reader.episode(index, keys))
        decode_s += time.perf_counter() - started
    frames = sum(e.length for e in decoded)
    partial = Path(tempfile.mkdtemp(dir=work, prefix="rates-"))
    with torch_threads(1):
        score_episode(model, decoded[0], mapping, 256)  # warm-up
        scored, infer_s = [], 0.0
        for episode in decoded:
            started = time.perf_counter()
            scored.append(score_episode(model, episode, mapping, 256))
            infer_s += time.perf_counter() - started
    started = time.perf_counter()
    for episode, arrays in zip(decoded, scored):
        stage_scores(episode_file(partial, episode.index), arrays)
    stage_s = time.perf_counter() - started
    identity = {"chunk_size": 50, "gamma": 0.99, "model": str(model_path)}
    started = time.perf_counter()
    assemble_labels(partial, episodes, identity, tuple(model.stage_names))
    assemble_s = time.perf_counter() - started
    return {
        "frames": frames,
        "episodes": len(episodes),
        "decode_fps": frames / decode_s,
        "inference_fps": frames / infer_s,
        "stage_episodes_per_s": len(episodes) / stage_s,
        "assemble_fps": frames / assemble_s,
    }


def label_runs(dataset: Path, model_path: Path, work: Path) -> dict:
    """End-to-end labelling: local, then Ray with 1 and 2 workers (Ray already started)."""
    import shutil

    from headway.reward.labelling import LabelConfig, label_dataset

    results = {}
    for name, settings in (("local", {}), ("ray_1", dict(executor="ray", workers=1, threads=1)),
                           ("ray_2", dict(executor="ray", workers=2, threads=1))):
        out = work / f"labels_{name}"
        shutil.rmtree(out, ignore_errors=True)
        summary = label_dataset(LabelConfig(dataset=dataset, model=model_path, out=out, **settings), progress=False)
        results[name] = {
            "frames": summary.scored_frames,
            "seconds": summary.scoring_seconds,
            "fps": summary.scored_frames / summary.scoring_seconds,
            "startup_seconds": summary.ray_startup_seconds,
            "total_seconds": summary.seconds,
        }
        print(f"  label {name:6s}: {results[name]['fps']:8.0f} frames/s ({summary.scored_frames} frames in "
              f"{summary.scoring_seconds:.1f} s; start-up {summary.ray_startup_seconds:.1f} s apart)", flush=True)
    return results


def collection_runs(episodes: int, work: Path) -> dict:
    """Rollout + staging episodes/s: one process against 2 Ray workers, the same seeds."""
    from headway.atomic import atomic_write_bytes
    from headway.datasets.collect import CollectConfig, EpisodeCollector, plan_episodes
    from headway.executors import RaySession, RaySettings

    config = CollectConfig(task="lift", episodes=episodes, image_size=84, seed=3, out=work / "collect_unused")
    plan = plan_episodes(config)
    staged = work / "collect_staged"
    staged.mkdir(exist_ok=True)
    local = EpisodeCollector(config)  # the simulator, built before the clock as the workers' is
    started = time.perf_counter()
    for planned in plan:
        data, _ = local.run(planned)
        atomic_write_bytes(staged / f"local_{planned.index}.npz", data)
    local_s = time.perf_counter() - started
    local.env.close()
    print(f"  collect local : {episodes / local_s:.3f} episodes/s ({episodes} in {local_s:.1f} s)", flush=True)

    def write(planned, result) -> None:
        atomic_write_bytes(staged / f"ray_{planned.index}.npz", result[0])

    with RaySession(RaySettings(workers=2)) as session:
        started = time.perf_counter()
        session.run(EpisodeCollector, (config,), plan, write, ahead=1, desc="collect", unit="ep", progress=False)
        ray_s = time.perf_counter() - started - session.warmup_seconds
    print(f"  collect ray_2 : {episodes / ray_s:.3f} episodes/s ({episodes} in {ray_s:.1f} s; "
          f"simulators built in {session.warmup_seconds:.1f} s apart)", flush=True)
    return {
        "episodes": episodes,
        "local": {"seconds": local_s, "episodes_per_s": episodes / local_s},
        "ray_2": {"seconds": ray_s, "episodes_per_s": episodes / ray_s, "warmup_seconds": session.warmup_seconds},
        "ratio": local_s / ray_s,
    }


def droid_table(rates: dict) -> list[dict]:
    """Wall time to label DROID (27 M frames x 2 views) with N CPU workers, from measured rates."""
    worker_fps = min(rates["decode_fps"], rates["inference_fps"])  # decode beside inference, per worker
    frames_per_episode = DROID_FRAMES / DROID_EPISODES
    stage_fps = rates["stage_episodes_per_s"] * frames_per_episode  # the driver stages every episode
    assemble_s = DROID_FRAMES / rates["assemble_fps"]  # one serial pass at the end
    rows = []
    for workers in WORKER_COUNTS:
        parallel = workers * worker_fps
        limits = {
            "decode": workers * rates["decode_fps"],
            "inference": workers * rates["inference_fps"],
            "write (driver staging)": stage_fps,
        }
        bound = min(limits, key=limits.get)
        scoring_s = DROID_FRAMES / min(parallel, stage_fps)
        total_s = scoring_s + assemble_s
        if assemble_s > scoring_s:
            bound = "write (final assembly)"
        rows.append({"workers": workers, "hours": total_s / 3600, "scoring_hours": scoring_s / 3600,
                     "assembly_hours": assemble_s / 3600, "bottleneck": bound})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=None, help="LeRobot dataset to label (default: one collected in --work)")
    parser.add_argument("--model", type=Path, default=None, help="reward checkpoint (default: an untrained default-size model)")
    parser.add_argument("--label-episodes", type=int, default=12, help="episodes of the default dataset")
    parser.add_argument("--collect-episodes", type=int, default=4, help="episodes rolled out per collection run")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "headway_scale_bench")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here as JSON")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = load_note()
    print(f"machine: {load_start}", flush=True)

    dataset = args.dataset or simulated_dataset(args.work / "lift", progress=False, task="lift",
                                                episodes=args.label_episodes, image_size=84, seed=0)
    from headway.datasets.reader import DatasetReader

    views = tuple(v for v in DatasetReader(dataset).views)
    model_path = args.model or default_model(args.work / "model", views)

    print("per-worker rates (one core each):", flush=True)
    rates = per_worker_rates(dataset, model_path, args.work)
    print(f"  decode {rates['decode_fps']:.0f} frames/s, inference {rates['inference_fps']:.0f} frames/s, "
          f"staging {rates['stage_episodes_per_s']:.0f} episodes/s, assembly {rates['assemble_fps']:.0f} frames/s "
          f"({rates['frames']} frames, {rates['episodes']} episodes)", flush=True)

    from headway.executors import init_ray

    started = time.perf_counter()
    init_ray(num_cpus=os.cpu_count())
    startup = time.perf_counter() - started
    print(f"Ray start-up: {startup:.1f} s (ray.init on this machine, reported apart)", flush=True)
    try:
        print("labelling:", flush=True)
        labels = label_runs(dataset, model_path, args.work)
        print("collection:", flush=True)
        collection = collection_runs(args.collect_episodes, args.work)
    finally:
        import ray

        ray.shutdown()

    local_fps = labels["local"]["fps"]
    ratios = {
        "label_ray_1_vs_local": labels["ray_1"]["fps"] / local_fps,
        "label_ray_2_vs_local": labels["ray_2"]["fps"] / local_fps,
        "label_ray_2_vs_ray_1": labels["ray_2"]["fps"] / labels["ray_1"]["fps"],
        "collect_ray_2_vs_local": collection["ratio"],
    }
    print("ratios (start-up excluded; goals: collection >= 1.7x, labelling >= 1.3x on 2 cores):")
    for name, value in ratios.items():
        print(f"  {name:24s} {value:.2f}x")
    table = droid_table(rates)
    print(f"DROID-sized labelling ({DROID_FRAMES / 1e6:.0f} M frames x 2 views, {DROID_EPISODES:,} episodes), "
          "from the per-worker rates above (84x84 frames; DROID's are larger, so decode weighs more):")
    print(f"  {'workers':>7s}  {'wall time':>10s}  bottleneck")
    for row in table:
        print(f"  {row['workers']:>7d}  {row['hours']:>8.2f} h  {row['bottleneck']}")
    load_end = load_note()
    print(f"machine at the end: {load_end}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "load_start": load_start, "load_end": load_end, "cpus": os.cpu_count(), "dataset": str(dataset),
            "model": str(model_path), "ray_startup_seconds": startup, "rates": rates, "labelling": labels,
            "collection": collection, "ratios": ratios, "droid": table,
        }, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
