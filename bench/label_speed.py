"""Labelling speed: decode-only against end-to-end `headway label`, and LeRobot's SARM progress path, on
the same dataset, in one run, on CPU.

    cd /work/main && uv run python bench/label_speed.py [--dataset DIR --model CKPT] [--threads N]
        [--work DIR] [--episodes 6] [--train-steps 150] [--sarm-queries 8] [--sarm-budget 60] [--skip-sarm]

Without --dataset/--model it makes its own in --work (default /tmp/headway_label_bench): it
collects a small lift dataset (two 84x84 views) with `headway.datasets.collect` and trains a small
reward model on it with `headway.reward.train`, so it runs on a fresh machine.

Figures (multi-view frames per second = dataset time steps per second, both views each):
  decode-only  every episode's videos of the views the model uses, decoded sequentially by
               `DatasetReader.episode` (PyAV, one pass per episode and view) and nothing else;
  end-to-end   `label_dataset` on the same dataset into a fresh folder: decode, resize, score with the
               reward model, stage each episode atomically, assemble sarm_progress.parquet and the
               label table (model loading and fingerprinting included; after one untimed warm-up
               run on episode 0);
  ratio        end-to-end / decode-only (target >= 50%), end-to-end target >= 1,000 frames/s;
  LeRobot SARM the per-frame work of lerobot's `compute_rabc_weights` (13-frame sample -> SARM's
               preprocessor with CLIP ViT-B/32 -> SARMRewardModel, random weights; one view, decoding
               NOT timed) on episode 0's frames of the first view, as frames/s and headway's speed-up.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fixtures import simulated_dataset, trained_reward_model  # bench/ is on sys.path
from machine import load_note  # bench/ is on sys.path

E2E_TARGET_FPS = 1000.0
RATIO_TARGET = 0.5


def prepare(work: Path, episodes: int, steps: int) -> tuple[Path, Path]:
    """A small lift dataset (two 84x84 views) and a small reward model trained on it, made once in `work`."""
    data = simulated_dataset(work / "lift", progress=False, task="lift", episodes=episodes, image_size=84, seed=0)
    model = trained_reward_model(work / "model", [data], progress=False, steps=steps, device="cpu")
    return data, model


def decode_only(dataset: Path, keys: list[str]) -> tuple[int, float]:
    from headway.datasets.reader import DatasetReader

    reader = DatasetReader(dataset)
    reader.episode(0, keys)  # warm the file cache and PyAV
    frames, started = 0, time.perf_counter()
    for index in range(reader.num_episodes):
        frames += reader.episode(index, keys).length
    return frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None, help="a LeRobot v3.0 dataset (default: collect one in --work)")
    parser.add_argument("--model", type=Path, default=None, help="a headway reward checkpoint (default: train one in --work)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "headway_label_bench")
    parser.add_argument("--episodes", type=int, default=6, help="episodes to collect when no --dataset is given")
    parser.add_argument("--train-steps", type=int, default=150, help="training steps when no --model is given")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads while scoring (default: label_dataset's own, all cores but the decoding one)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each measurement; the best is kept")
    parser.add_argument("--sarm-queries", type=int, default=8)
    parser.add_argument("--sarm-budget", type=float, default=60.0)
    parser.add_argument("--skip-sarm", action="store_true")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    load_before = load_note()
    dataset, model_path = args.dataset, args.model
    if dataset is None or model_path is None:
        made_data, made_model = prepare(args.work, args.episodes, args.train_steps)
        dataset, model_path = dataset or made_data, model_path or made_model

    from headway.reward.label_inputs import load_model, match_views
    from headway.reward.labelling import LabelConfig, label_dataset
    from headway.datasets.reader import DatasetReader

    reader = DatasetReader(dataset)
    model = load_model(model_path, "cpu")
    mapping = match_views(tuple(model.views), reader.camera_keys, {})
    keys = list(mapping.values())
    print(f"torch {torch.__version__}, CPU, {os.cpu_count()} cores; torch threads while labelling: "
          f"{args.threads or 'label_dataset default (cores - 1, one core decodes)'}; {load_before}")
    print(f"dataset {dataset}: {reader.num_episodes} episodes, {reader.num_frames} frames, {reader.fps:g} fps; "
          f"views {', '.join(keys)}; model {model_path} (input {model.image_size}x{model.image_size})")

    decode_runs = [decode_only(dataset, keys) for _ in range(args.repeats)]
    frames, decode_seconds = min(decode_runs, key=lambda r: r[1])
    decode_fps = frames / decode_seconds
    print(f"decode-only: {frames} frames x {len(keys)} views in "
          f"{', '.join(f'{s:.2f}' for _, s in decode_runs)} s -> best {decode_fps:,.0f} frames/s")

    out = args.work / "labels"
    # warm-up, untimed: one episode through the whole pipeline (lazy imports, first-call allocations)
    label_dataset(LabelConfig(dataset=dataset, model=model_path, out=out, device="cpu", episodes=(0,)), overwrite=True, progress=False)
    e2e = []
    for _ in range(args.repeats):
        summary = label_dataset(
            LabelConfig(dataset=dataset, model=model_path, out=out, device="cpu", threads=args.threads), overwrite=True, progress=False
        )
        e2e.append(summary.seconds)
    e2e_seconds = min(e2e)
    e2e_fps = summary.frames / e2e_seconds
    ratio = e2e_fps / decode_fps
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"end-to-end label_dataset: {summary.frames} frames in {', '.join(f'{s:.2f}' for s in e2e)} s -> best "
          f"{e2e_fps:,.0f} frames/s; peak RSS of this process {peak_mb:,.0f} MB")
    print(f"  wrote {summary.progress_path} and {summary.table_path}")

    sarm_fps = None
    if not args.skip_sarm:
        from sarm_peer import build_sarm, sarm_offline  # bench/ is on sys.path

        episode = reader.episode(0, keys[:1])
        from headway.perception.preprocess import resize_frames

        frames0 = resize_frames(episode.images[keys[0]], model.image_size)
        state = episode.state
        state = (np.zeros((episode.length, 9), np.float32) if state is None else np.asarray(state, np.float32).reshape(episode.length, -1))
        with tempfile.TemporaryDirectory() as folder:
            sarm, preprocess, _ = build_sarm(episode.task or "lift the cube", Path(folder))
        done, seconds = sarm_offline(sarm, preprocess, frames0, state, episode.task or "lift the cube", args.sarm_queries, args.sarm_budget)
        sarm_fps = done / seconds
        print(f"LeRobot SARM progress path (compute_rabc_weights per frame, random weights, 1 view {keys[0]}, decoding not "
              f"timed): {done} frames of episode 0 in {seconds:.2f} s = {sarm_fps:.3g} frames/s")

    print("\n" + "=" * 92)
    print(f"{'measurement':<44}{'frames/s':>14}{'ratio':>14}")
    print(f"{'decode only (PyAV, sequential per episode)':<44}{decode_fps:>14,.0f}{1.0:>14.2f}")
    print(f"{'headway label end to end':<44}{e2e_fps:>14,.0f}{ratio:>14.2f}")
    if sarm_fps is not None:
        print(f"{'LeRobot SARM progress (inference only)':<44}{sarm_fps:>14.3g}{sarm_fps / decode_fps:>14.2g}")
        print(f"headway end to end / LeRobot SARM: {e2e_fps / sarm_fps:,.0f}x")
    print("=" * 92)
    print(f"targets: end-to-end >= {RATIO_TARGET:.0%} of decode-only: {ratio:.0%} {'MET' if ratio >= RATIO_TARGET else 'MISSED'}; "
          f">= {E2E_TARGET_FPS:,.0f} frames/s: {e2e_fps:,.0f} {'MET' if e2e_fps >= E2E_TARGET_FPS else 'MISSED'}")
    print(f"{load_note()} at the end (was {load_before.split(' on ')[0].replace('load average ', '')}); "
          f"total {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    main()
