"""The protocol every headway policy implements, and loading any policy checkpoint by its format.

A policy maps the observation layout of `HeadwayEnv` (and of the hardware layer's arms):
{"images": {view: uint8 HxWx3 (OpenCV channel order, as the env renders)}, "state": float32 proprioception,
"object": float32 object state (simulation only; a policy that needs it cannot run on a real arm)}
to one action per call. Chunking policies keep their own queue and refill it when empty, so
callers see one action per control step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from headway.checkpoint import load_by_format
from headway.registry import Registry

Observation = dict[str, Any]


@runtime_checkable
class Policy(Protocol):
    """A control policy over headway observations."""

    @property
    def task(self) -> str: ...

    @property
    def views(self) -> tuple[str, ...]:
        """Camera views the policy reads (empty for a state-only policy)."""
        ...

    @property
    def state_dim(self) -> int: ...

    @property
    def action_dim(self) -> int: ...

    def reset(self) -> None:
        """Forget anything carried between steps (action queues, recurrent state)."""
        ...

    def act(self, observation: Observation) -> np.ndarray:
        """The next action, float32 of shape (action_dim,)."""
        ...

    def save(self, path: Path) -> None:
        """Write `config.json` (with its `format`) and `model.safetensors` to the folder `path`."""
        ...


# format name (config.json "format") -> loader(path, device) -> Policy
POLICY_FORMATS: Registry[Callable[[Path, str | None], Policy]] = Registry("policy format")


def _load_bc(path: Path, device: str | None) -> Policy:
    from headway.policy.bc import BCPolicy  # deferred: torch, pandas/pyarrow; each format loads its own stack

    return BCPolicy.load(path, device)


POLICY_FORMATS.register("headway.bc", _load_bc)


def _load_sac(path: Path, device: str | None) -> Policy:
    from headway.policy.sac import SACPolicy  # deferred: torch (and a cycle: sac imports this module)

    return SACPolicy.load(path, device)


POLICY_FORMATS.register("headway.sac", _load_sac)


def _load_scripted(path: Path, device: str | None) -> Policy:
    from headway.policy.scripted import load_scripted  # deferred: robosuite/mujoco (and a cycle: scripted imports this module)

    return load_scripted(path, device)


POLICY_FORMATS.register("headway.scripted", _load_scripted)


def load_policy(path: Path | str, device: str | None = None) -> Policy:
    """Open a policy checkpoint of any registered format."""
    fix = "Pass the folder written by `headway policy bc` or `headway rl train`"
    return load_by_format(path, POLICY_FORMATS, device, "policy", fix)
