"""The annotated-stage record shared by every area (simulation, datasets, reward labels)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subtask:
    """One annotated stage of an episode: its name and its first and last frame (inclusive)."""

    name: str
    start: int
    end: int
