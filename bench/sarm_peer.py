"""LeRobot's SARM reward model as a peer for headway's benches, built from lerobot 0.6's own classes
with random weights and nothing downloaded (see bench/reward_speed.py's docstring for the details).

Used by bench/reward_speed.py and bench/label_speed.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

SARM_VIEW = "agentview"


def local_clip_tokenizer(words: list[str], folder: Path):
    """A CLIPTokenizer over a byte-level vocab with `words` as whole tokens (no download)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    characters = list(bytes_to_unicode().values())
    vocab = characters + [c + "</w>" for c in characters]
    merges = []
    for word in dict.fromkeys(words):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        prefix = pieces[0]
        for piece in pieces[1:]:
            merges.append((prefix, piece))
            prefix += piece
            if prefix not in vocab:
                vocab.append(prefix)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=list(dict.fromkeys(merges)), model_max_length=77)
    tokenizer.save_pretrained(folder / "clip_tokenizer")
    return tokenizer


def build_sarm(task: str, folder: Path):
    """SARM model + LeRobot's SARM preprocessor, CLIP built from its default config (random weights)."""
    from transformers import CLIPConfig, CLIPImageProcessorFast, CLIPModel, CLIPProcessor

    from lerobot.rewards.sarm import processor_sarm
    from lerobot.rewards.sarm.configuration_sarm import SARMConfig
    from lerobot.rewards.sarm.modeling_sarm import SARMRewardModel

    config = SARMConfig(device="cpu", image_key=f"observation.images.{SARM_VIEW}")
    clip = CLIPModel(CLIPConfig())
    processor = CLIPProcessor(image_processor=CLIPImageProcessorFast(), tokenizer=local_clip_tokenizer(task.lower().split(), folder))
    with (
        mock.patch.object(processor_sarm.CLIPModel, "from_pretrained", side_effect=lambda *a, **k: clip),
        mock.patch.object(processor_sarm.CLIPProcessor, "from_pretrained", side_effect=lambda *a, **k: processor),
    ):
        preprocess, _ = processor_sarm.make_sarm_pre_post_processors(config)
    if hasattr(preprocess, "eval"):
        preprocess.eval()
    for step in preprocess.steps:
        if hasattr(step, "eval"):
            step.eval()
    encoder = next(s for s in preprocess.steps if isinstance(s, processor_sarm.SARMEncodingProcessorStep))
    model = SARMRewardModel(config).to("cpu").eval()
    return model, preprocess, encoder


def sarm_window(frame: int, length: int, config) -> list[int]:
    """Frame indices of the 13-frame sample a LeRobotDataset returns with SARM's delta timestamps
    (9 bidirectional observation frames + 4 rewind placeholders), clamped to the episode."""
    from lerobot.rewards.sarm.sarm_utils import compute_absolute_indices

    observed, _ = compute_absolute_indices(frame, 0, length, config.n_obs_steps, frame_gap=config.frame_gap)
    rewind = [min(max(frame + d, 0), length - 1) for d in config.observation_delta_indices[config.n_obs_steps + 1 :]]
    return observed.tolist() + rewind


@torch.no_grad()
def sarm_offline(model, preprocess, frames: np.ndarray, state: np.ndarray, task: str, queries: int, budget: float, warmup: int = 1):
    from lerobot.rewards.sarm.compute_rabc_weights import generate_all_frame_indices

    config = model.config
    center = config.n_obs_steps // 2
    length = len(frames)
    # a LeRobotDataset returns float32 CHW images in [0, 1]; decoding is not part of the timing
    chw = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float() / 255.0
    state_t = torch.from_numpy(state).float()
    order = generate_all_frame_indices(0, length, config.frame_gap)

    def query(frame: int) -> float:
        window = sarm_window(frame, length, config)
        batch = {config.image_key: chw[window], "task": task, "index": frame, "episode_index": 0, config.state_key: state_t[window]}
        processed = preprocess(batch)
        progress = model.calculate_rewards(
            text_embeddings=processed["text_features"],
            video_embeddings=processed["video_features"],
            state_features=processed.get("state_features"),
            lengths=processed.get("lengths"),
            return_all_frames=True,
            head_mode="sparse",
        )
        return float(progress[0, center])

    for frame in order[:warmup]:
        query(frame)
    done, started = 0, time.perf_counter()
    for frame in order[:queries]:
        query(frame)
        done += 1
        if time.perf_counter() - started > budget and done >= 3:
            break
    return done, time.perf_counter() - started
