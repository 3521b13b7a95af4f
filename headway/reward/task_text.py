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


# Training paraphrases of the simulated tasks' instructions (`--paraphrase-prob`). Held-out wordings
# used to test a model (e.g. bench/reward_robustness.py's) must stay out of these lists.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "pick up the red cube and lift it": (
        "grab the red cube and raise it",
        "lift the red cube",
        "pick the red block up and hold it in the air",
        "take the red cube off the table",
        "raise the red cube above the table",
        "get the red box and lift it up",
    ),
    "stack the red cube on the green cube": (
        "put the red cube on top of the green cube",
        "place the red block onto the green block",
        "stack red on green",
        "set the red box on the green box",
    ),
    "put the can in its bin": (
        "place the can into its bin",
        "move the can to its bin",
        "drop the can in the right bin",
    ),
    "open the door": ("pull the door open", "swing the door open", "open that door"),
}


def paraphrases(task: str) -> tuple[str, ...]:
    """Known training paraphrases of `task` (none for tasks headway does not know)."""
    return PARAPHRASES.get(task.strip().lower(), ())
