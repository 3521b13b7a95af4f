"""Several training processes under torchrun: process-group set-up, rank queries and barriers.

torchrun (`torch.distributed.run`) starts one process per `--nproc_per_node` and tells each its
place through the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Code calls
`session(device)`; when those variables say there is more than one process it joins the group
(gloo on CPU, nccl on CUDA, each process on cuda:LOCAL_RANK), which stays up until the process exits. Without them,
or with a world of one, nothing is initialised and every helper here is a cheap no-op, so a plain
run behaves exactly as before.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from headway.errors import HeadwayError
from headway.runtime import default_device

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    if not all(name in os.environ for name in LAUNCH_VARIABLES):
        return False
    return int(os.environ["WORLD_SIZE"]) > 1


def active() -> bool:
    """Whether a process group is initialised (this process trains together with others)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's rank on its own machine (0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Whether this process writes checkpoints, logs and progress bars (global rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here; nothing without a process group."""
    if not active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather_object(value: Any) -> list[Any]:
    """Every process's `value` (picklable), in rank order; `[value]` without a process group."""
    if not active():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over every process (in place); `tensor` itself without a group."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def choose_device(requested: str | torch.device | None = None) -> torch.device:
    """The device this process computes on: cuda:LOCAL_RANK under a launcher when CUDA is asked for or
    present, the requested device otherwise (CPU when there is no CUDA)."""
    chosen = default_device(requested)  # refuses a CUDA device where there is none
    if not launched():
        return chosen
    want, cuda = torch.device(requested) if requested is not None else None, torch.cuda.is_available()
    if want is not None and want.type != "cuda":
        return want
    if not cuda:
        return torch.device("cpu")
    local = int(os.environ["LOCAL_RANK"])
    if local >= torch.cuda.device_count():
        raise HeadwayError(
            f"this node runs at least {local + 1} training processes but has {torch.cuda.device_count()} GPU(s); "
            f"use torchrun --nproc_per_node {torch.cuda.device_count()} (one process per GPU) or --device cpu"
        )
    return torch.device("cuda", local)


def init(device: torch.device) -> bool:
    """Join the launcher's process group (nccl for a CUDA device, gloo otherwise); returns whether
    this call initialised it (False when there is no launcher or a group already exists)."""
    if not launched() or active():
        return False
    if not dist.is_available():
        raise HeadwayError("this torch build has no torch.distributed; run without torchrun or install a full torch")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_destroy)
    return True


def _destroy() -> None:
    if active():
        dist.destroy_process_group()


@contextmanager
def session(requested_device: str | torch.device | None = None) -> Iterator[torch.device]:
    """Yield this process's device, inside the launcher's process group when there is one. The group
    stays up for later calls in the same process (a second join after a teardown hung under torchrun
    here) and is torn down when the process exits."""
    device = choose_device(requested_device)
    init(device)
    yield device


def share(total: int) -> tuple[int, int]:
    """This process's share of `total` items split as evenly as possible over the processes, as
    (start, count): the first `total % world` ranks take one more."""
    world, me = world_size(), rank()
    base, extra = divmod(total, world)
    count = base + (1 if me < extra else 0)
    start = me * base + min(me, extra)
    return start, count
