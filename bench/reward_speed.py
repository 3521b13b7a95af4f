"""Reward-model speed: headway's stage-aware reward model against LeRobot's SARM, in one run, on the
same frames, on CPU.

    cd /work/main && uv run python bench/reward_speed.py [--threads 2] [--dataset DIR] [--model CKPT]
        [--frames 300] [--steps 200] [--sarm-steps 20] [--sarm-queries 8] [--sarm-budget 60]

Two figures per model:

* online: latency of scoring ONE new observation (batch 1), median and p90 in ms;
* offline: throughput scoring a whole episode, as frames/s per view (frames x views / seconds)
  and as multi-view frames/s (time steps scored per second).

headway (two 84x84 views, agentview + robot0_eye_in_hand): `StageRewardNet` with default sizes and
random weights (or `--model CKPT`), wrapped in `StageRewardModel(net, device="cpu")`.
  online  = `StageRewardModel.stream(task).step({view: (84,84,3) uint8})`, `--steps` steps after 20
            warm-up steps (conv encoder on both views, view fusion, 2-layer window transformer).
  offline = `score_episode(images, task)` on a `--frames`-frame two-view episode, median of 3 runs.

LeRobot SARM (ONE view: agentview; SARM is single-camera), built from lerobot 0.6's own classes with
random weights and nothing downloaded:
  - `SARMRewardModel(SARMConfig())` (default sizes: hidden 768, 8 layers, 12 heads; its
    StageTransformer and SubtaskTransformer), eval mode;
  - the preprocessor from `make_sarm_pre_post_processors(config)` (AddBatchDimension, Rename,
    Normalizer, SARMEncodingProcessorStep, Device), in eval mode. `SARMEncodingProcessorStep.__init__`
    insists on `CLIPModel.from_pretrained("openai/clip-vit-base-patch32")` and
    `CLIPProcessor.from_pretrained(...)`; while building it, those two calls are answered with
    `CLIPModel(CLIPConfig())` (the default config IS ViT-B/32 + the 12-layer text tower, random
    weights) and `CLIPProcessor(CLIPImageProcessorFast(), CLIPTokenizer)` (the image processor's
    defaults are openai's: bicubic resize to 224, centre crop, CLIP mean/std). The tokenizer's vocab
    files cannot be downloaded, so a local byte-level BPE vocab is written that has the task's words
    as whole tokens ("lift the cube" -> 5 ids, as with the real vocab); it only feeds the text tower.
  online  = the work needed per NEW frame when every earlier frame's CLIP feature is cached:
            lerobot's `SARMEncodingProcessorStep._encode_images_batch` on the new frame (uint8 ->
            PIL -> CLIPProcessor -> CLIP image features), then `SARMRewardModel.calculate_rewards`
            (stage + subtask transformers) over SARM's 13-slot window for that frame: 9 observation
            slots at frame offsets -120..+120 step `frame_gap`=30 (future slots clamp to the newest
            frame, as `compute_absolute_indices` does at an episode's end) + 4 rewind slots that the
            processor zeroes in eval (their CLIP feature of a black frame is computed once, untimed);
            lengths=9; the task's CLIP text feature is cached (untimed); progress read at the centre
            slot. Fewer steps than headway (`--sarm-steps`, capped by `--sarm-budget` seconds).
  offline = what `compute_rabc_weights.compute_sarm_progress` does per frame (stride 1, sparse head):
            for each query frame, in its `generate_all_frame_indices` order, the 13-frame sample a
            LeRobotDataset with SARM's delta timestamps returns (float CHW in [0,1]; video decoding
            NOT timed, as headway's figure excludes decoding too), `preprocess(batch)` (CLIP-encodes
            all 13 frames in one batch of clip_batch_size=64, plus the task text), then
            `calculate_rewards(..., return_all_frames=True)` and the centre slot. One query gives one
            frame's progress, so frames/s = queries/s. Only the first `--sarm-queries` queries (or
            as many as fit in `--sarm-budget` s) are timed and the rate extrapolated to the episode.

Targets (headway): online step <= 10 ms median; offline >= 1,000 frames/s per view.
On a shared machine, multi-threaded torch ops wait for busy cores; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sarm_peer import SARM_VIEW, build_sarm, sarm_offline, sarm_window  # noqa: F401  (bench/ is on sys.path)
from machine import load_note  # bench/ is on sys.path

VIEWS = ("agentview", "robot0_eye_in_hand")
STAGES = ("reach the cube", "grasp the cube", "lift the cube")
PROPORTIONS = (0.5, 0.2, 0.3)
TASK = "lift the cube"
ONLINE_TARGET_MS = 10.0
OFFLINE_TARGET_FPS = 1000.0


# -- frames ------------------------------------------------------------------------------------------
def load_frames(dataset: str | None, views: tuple[str, ...], size: int, frames: int, seed: int) -> tuple[dict, str, str]:
    """(views -> (T,H,W,3) uint8, task, description). Dataset episodes shorter than `frames` are cycled."""
    if dataset is None:
        rng = np.random.default_rng(seed)
        images = {v: rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for v in views}
        return images, TASK, f"random uint8 frames, {frames} x {size}x{size}"
    from headway.datasets.reader import DatasetReader

    episode = DatasetReader(Path(dataset)).episode(0, views=list(views))
    images = {}
    for view in views:
        clip = np.asarray(episode.images[view])
        if clip.shape[1:3] != (size, size):
            import cv2

            clip = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in clip])
        images[view] = np.ascontiguousarray(clip[np.arange(frames) % len(clip)])
    note = f" (cycled from {episode.length})" if episode.length < frames else ""
    return images, episode.task or TASK, f"{dataset} episode 0, {frames} frames{note} at {size}x{size}"


# -- headway -----------------------------------------------------------------------------------------
def build_headway(checkpoint: str | None):
    from headway.reward.stage_model import StageModelConfig, StageRewardNet
    from headway.reward.stage_reward import StageRewardModel

    if checkpoint:
        return StageRewardModel.load(Path(checkpoint), device="cpu"), f"checkpoint {checkpoint}"
    net = StageRewardNet(StageModelConfig(views=VIEWS, stage_names=STAGES, stage_proportions=PROPORTIONS))
    return StageRewardModel(net, device="cpu"), "default sizes, random weights"


def headway_online(model, images: dict, task: str, steps: int, warmup: int = 20) -> np.ndarray:
    length = len(next(iter(images.values())))
    scorer = model.stream(task)
    times = []
    for t in range(warmup + steps):
        observation = {v: f[t % length] for v, f in images.items()}
        started = time.perf_counter()
        scorer.step(observation)
        if t >= warmup:
            times.append(time.perf_counter() - started)
    return np.asarray(times) * 1e3


def headway_offline(model, images: dict, task: str, repeats: int = 3) -> list[float]:
    model.score_episode({v: f[:32] for v, f in images.items()}, task)  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.score_episode(images, task)
        seconds.append(time.perf_counter() - started)
    return seconds


# -- LeRobot SARM ------------------------------------------------------------------------------------
@torch.no_grad()
def sarm_online(model, encoder, frames: np.ndarray, state: np.ndarray, task: str, steps: int, budget: float, warmup: int = 2):
    from lerobot.rewards.sarm.sarm_utils import pad_state_to_max_dim

    config = model.config
    center = config.n_obs_steps // 2
    obs_slots = config.n_obs_steps + 1
    text = encoder._encode_text_clip(task, 1)  # cached for the episode (untimed)
    black = encoder._encode_images_batch(np.zeros((1, 1, 3, *frames.shape[1:3]), dtype=np.float32))[0, 0]
    cache: list[torch.Tensor] = []
    length = len(frames)
    times, deadline = [], None
    for t in range(warmup + steps):
        started = time.perf_counter()
        chw = np.ascontiguousarray(frames[t % length].transpose(2, 0, 1))[None, None]  # (1,1,3,H,W) uint8
        cache.append(encoder._encode_images_batch(chw)[0, 0])
        indices = sarm_window(t, t + 1, config)[:obs_slots]  # the episode so far ends at t
        video = torch.stack([cache[i] for i in indices] + [black] * config.max_rewind_steps)[None]
        states = [state[i % length] for i in indices] + [np.zeros_like(state[0])] * config.max_rewind_steps
        state_features = pad_state_to_max_dim(torch.from_numpy(np.stack(states)).float()[None], config.max_state_dim)
        progress = model.calculate_rewards(
            text_embeddings=text,
            video_embeddings=video,
            state_features=state_features,
            lengths=torch.tensor([obs_slots], dtype=torch.int32),
            return_all_frames=True,
            head_mode="sparse",
        )
        float(progress[0, center])
        if t >= warmup:
            times.append(time.perf_counter() - started)
            deadline = deadline or time.perf_counter() + budget
            if time.perf_counter() > deadline and len(times) >= 5:
                break
    return np.asarray(times) * 1e3


# -- report ------------------------------------------------------------------------------------------
def rate(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--dataset", default=None, help="a collected LeRobot v3.0 dataset; episode 0's frames are used")
    parser.add_argument("--model", default=None, help="a headway reward checkpoint folder (default: random weights)")
    parser.add_argument("--frames", type=int, default=300, help="episode length for the offline figures")
    parser.add_argument("--steps", type=int, default=200, help="headway online steps timed (after 20 warm-up)")
    parser.add_argument("--sarm-steps", type=int, default=20, help="SARM online steps timed (after 2 warm-up)")
    parser.add_argument("--sarm-queries", type=int, default=8, help="SARM offline queries (frames) timed (after 1 warm-up)")
    parser.add_argument("--sarm-budget", type=float, default=60.0, help="stop each SARM measurement after this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sarm", action="store_true", help="time headway only")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    begun = time.perf_counter()
    load_before = load_note()

    model, model_note = build_headway(args.model)
    views = tuple(model.views)
    images, task, frames_note = load_frames(args.dataset, views, model.image_size, args.frames, args.seed)
    print(f"torch {torch.__version__}, CPU, torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}); {load_before}")
    print(f"frames: {frames_note}; task {task!r}")

    # headway
    print(f"\nheadway StageRewardModel ({model_note}; encoder {model.config.encoder}, dim {model.config.dim}, "
          f"window {model.config.window}, {model.config.layers} layers, ensemble {model.config.ensemble}), "
          f"{len(views)} views: {', '.join(views)}")
    hw_online = headway_online(model, images, task, args.steps)
    hw_seconds = headway_offline(model, images, task)
    hw_time = float(np.median(hw_seconds))
    hw_fps = args.frames / hw_time
    print(f"  online  stream().step, batch 1, {len(hw_online)} steps: median {np.median(hw_online):.2f} ms, "
          f"p90 {np.percentile(hw_online, 90):.2f} ms")
    print(f"  offline score_episode, {args.frames} frames x {len(views)} views: "
          f"{', '.join(f'{s:.3f}' for s in hw_seconds)} s -> median {hw_time:.3f} s = "
          f"{hw_fps * len(views):,.0f} frames/s per view, {hw_fps:,.0f} multi-view frames/s")

    rows = [("headway stage reward", len(views), hw_online, hw_fps * len(views), hw_fps)]
    if not args.skip_sarm:
        with tempfile.TemporaryDirectory() as folder:
            sarm, preprocess, encoder = build_sarm(task, Path(folder))
        config = sarm.config
        frames = images[SARM_VIEW] if SARM_VIEW in images else next(iter(images.values()))
        sarm_view = SARM_VIEW if SARM_VIEW in images else next(iter(images))
        rng = np.random.default_rng(args.seed)
        state = rng.standard_normal((len(frames), 9)).astype(np.float32)  # SARM pads state to 32 dims
        if args.dataset is not None:
            from headway.datasets.reader import DatasetReader

            recorded = DatasetReader(Path(args.dataset)).episode(0, decode=False).state
            if recorded is not None:
                state = np.asarray(recorded, dtype=np.float32).reshape(len(recorded), -1)[np.arange(len(frames)) % len(recorded)]
        print(f"\nLeRobot SARM (lerobot.rewards.sarm, random weights): ONE view ({sarm_view}) - SARM is single-camera. "
              f"CLIP ViT-B/32 from default CLIPConfig ({sum(p.numel() for p in encoder.clip_model.parameters()) / 1e6:.0f}M params) "
              f"+ SARMRewardModel (stage + subtask transformers, hidden {config.hidden_dim}, {config.num_layers} layers, "
              f"{sum(p.numel() for p in sarm.parameters()) / 1e6:.0f}M params); window 13 slots = 9 obs "
              f"(offsets +-{config.frame_gap * (config.n_obs_steps // 2)} step {config.frame_gap}) + {config.max_rewind_steps} rewind")
        sarm_on = sarm_online(sarm, encoder, frames, state, task, args.sarm_steps, args.sarm_budget)
        print(f"  online  per new frame: CLIP image features of the new frame (lerobot _encode_images_batch) + "
              f"calculate_rewards over its 13-slot window of cached features; {len(sarm_on)} steps: "
              f"median {np.median(sarm_on):.1f} ms, p90 {np.percentile(sarm_on, 90):.1f} ms")
        done, seconds = sarm_offline(sarm, preprocess, frames, state, task, args.sarm_queries, args.sarm_budget)
        sarm_fps = done / seconds
        print(f"  offline compute_rabc_weights-style, per frame: 13-frame sample -> preprocess (CLIP on 13 frames + text) "
              f"-> calculate_rewards; {done} of {len(frames)} queries in {seconds:.2f} s = {sarm_fps:.3g} frames/s "
              f"(extrapolated {len(frames) / sarm_fps:.0f} s for the {len(frames)}-frame episode)")
        rows.append(("LeRobot SARM (1 view)", 1, sarm_on, sarm_fps, sarm_fps))

    print("\n" + "=" * 104)
    print(f"{'model':<24}{'views':>6}{'online median':>15}{'online p90':>12}{'offline frames/s/view':>23}{'multi-view frames/s':>21}")
    for name, n_views, online, per_view, multi in rows:
        print(f"{name:<24}{n_views:>6}{np.median(online):>12.2f} ms{np.percentile(online, 90):>9.2f} ms"
              f"{rate(per_view):>23}{rate(multi):>21}")
    if len(rows) == 2:
        (_, _, hw_on, hw_pv, hw_mv), (_, _, sa_on, sa_pv, sa_mv) = rows
        print(f"{'speed-up headway/SARM':<24}{'':>6}{np.median(sa_on) / np.median(hw_on):>13.0f}x "
              f"{np.percentile(sa_on, 90) / np.percentile(hw_on, 90):>10.0f}x {hw_pv / sa_pv:>21,.0f}x {hw_mv / sa_mv:>20,.0f}x")
        print("  (headway scores 2 views per step, SARM 1; the per-view column counts camera frames, the last column time steps)")
    print("=" * 104)
    online_ok = np.median(hw_online) <= ONLINE_TARGET_MS
    offline_ok = rows[0][3] >= OFFLINE_TARGET_FPS
    print(f"targets (headway): online step <= {ONLINE_TARGET_MS:.0f} ms median: {np.median(hw_online):.2f} ms "
          f"{'MET' if online_ok else 'MISSED'}; offline >= {OFFLINE_TARGET_FPS:,.0f} frames/s per view: "
          f"{rows[0][3]:,.0f} {'MET' if offline_ok else 'MISSED'}")
    print(f"torch threads {torch.get_num_threads()}; {load_note()} at the end (was {load_before.split(' on ')[0].replace('load average ', '')}); "
          f"total {time.perf_counter() - begun:.0f} s")
    if args.threads > 1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        print("note: the machine is busier than its core count; multi-threaded ops wait for descheduled threads, "
              "so these figures are pessimistic (compare with --threads 1)")


if __name__ == "__main__":
    main()
