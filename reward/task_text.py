"""Task text as model input: hashed word and word-pair ids, so any instruction maps to an embedding."""

from __future__ import annotations

import re
import zlib

import torch

TEXT_BUCKETS = 4096
MAX_TOKENS = 24


def task_token_ids(task: str) -> list[int]:
    """Stable ids (crc32, not Python's salted hash) of the lower-cased words and word pairs of `task`."""
    words = re.findall(r"[a-z0-9]+", task.lower())
    tokens = words + [f"{a}_{b}" for a, b in zip(words, words[1:])]
    ids = [zlib.crc32(token.encode()) % (TEXT_BUCKETS - 1) + 1 for token in tokens[:MAX_TOKENS]]
    return ids or [0]


def task_batch(tasks: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, offsets) for `nn.EmbeddingBag` over a batch of task strings."""
    ids, offsets = [], []
    for task in tasks:
        offsets.append(len(ids))
        ids.extend(task_token_ids(task))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)
