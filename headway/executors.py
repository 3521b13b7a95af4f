"""Run independent per-episode work on Ray: one machine's cores, or a cluster (`--executor ray`).

    settings = ray_settings("ray", address="auto", workers=8, gpus_per_worker=0)
    with RaySession(settings) as session:
        session.run(Worker, (args,), items, on_result, prepare=decode_fn, desc="labelling")

Why Ray core and not a scheduler of our own: Ray already places workers on nodes, restarts dead
ones and retries their work. headway's side is small: a pool of long-lived actors (each builds
its expensive state, a reward model or a simulator, once), optionally a second actor beside each
that prepares its next item (decoding), a bounded number of items in flight (memory does not grow
with the dataset), and results handed to the driver in whatever order they finish. The driver
alone writes files, so an item is staged once however often a dead worker's item is retried.
Why not Ray Data: its LeRobot reader is alpha and the pipeline here needs exact per-episode
staging for resume; per-item Ray tasks were tried first and lost to process churn (Ray reaps idle
task workers, each restart re-imports torch and lerobot).

The worker classes are plain Python classes from the area modules; Ray is imported only here and
only when a run asks for it, so local runs never load it. Nothing here knows about datasets or
simulators.

Test hook: with `HEADWAY_RAY_CRASH_ONCE=<file>` in the driver's environment, the first actor call
to find `<file>` absent creates it and kills its own process, as a node failure would.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headway.errors import HeadwayError

EXECUTORS = ("ray",)
ADDRESS_TIMEOUT = 30.0  # seconds to give up on a Ray address that does not answer
RETRIES = 3  # a dead worker's item is retried this many times (actor restarts and task retries)
CRASH_ONCE = "HEADWAY_RAY_CRASH_ONCE"


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide to run: `address` None starts Ray on this machine; `workers` None uses every
    CPU (or every GPU / `gpus_per_worker`) of the cluster."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0


def ray_settings(
    executor: str | None, address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None
) -> RaySettings | None:
    """Validate the `--executor/--address/--workers/--gpus-per-worker` flags; None means run locally."""
    if executor in (None, "", "local"):
        given = [flag for flag, value in (("--address", address), ("--workers", workers), ("--gpus-per-worker", gpus_per_worker)) if value]
        if given:
            raise HeadwayError(f"{', '.join(given)} only apply with --executor ray; add --executor ray or leave them out")
        return None
    if executor not in EXECUTORS:
        raise HeadwayError(f"unknown --executor {executor!r}; valid executors: local (the default), {', '.join(EXECUTORS)}")
    if workers is not None and int(workers) < 1:
        raise HeadwayError(f"--workers must be at least 1, got {workers}")
    if gpus_per_worker is not None and not float(gpus_per_worker) >= 0:
        raise HeadwayError(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker}")
    if address is not None and not str(address).strip():
        address = None
    return RaySettings(address, None if workers is None else int(workers), float(gpus_per_worker or 0.0))


def add_executor_arguments(parser, what: str) -> None:
    """The `--executor/--address/--workers/--gpus-per-worker` flags, the same on every command that has them."""
    parser.add_argument(
        "--executor", choices=("local",) + EXECUTORS, default=None,
        help=f"where to run {what}: in this process (local, the default) or on a Ray cluster (ray; see docs/scale.md)",
    )
    parser.add_argument(
        "--address", default=None,
        help="with --executor ray: the cluster to join (auto: the one `ray start --head` started here; HOST:PORT or "
        "ray://HOST:10001); default: start Ray on this machine",
    )
    parser.add_argument("--workers", type=int, default=None, help="with --executor ray: parallel workers (default: one per CPU, or per GPU share)")
    parser.add_argument("--gpus-per-worker", type=float, default=None, help="with --executor ray: GPUs each worker holds (default 0: CPU)")


def _probe_address(address: str, timeout: float) -> None:
    """Fail fast when nothing listens at a `host:port` or `ray://host:port` address (ray.init would wait minutes)."""
    if address == "auto" or address.startswith(("local", "anyscale://")):
        return
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?(?::(\d+))?/?", address)
    if not match:
        raise HeadwayError(f"--address {address!r} is not a Ray address; write auto, HOST:PORT or ray://HOST:10001")
    host, port = match.group(1), int(match.group(2) or (10001 if address.startswith("ray://") else 6379))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise HeadwayError(
            f"--address {address}: no Ray cluster answers at {host}:{port} ({error.strerror or error}); "
            "start one with `ray start --head` on that machine, check the host and port, or leave --address out "
            "to run Ray on this machine"
        ) from None


@contextmanager
def _neutral_cwd():
    """Ray puts the driver's working directory first on its workers' sys.path, where any folder named
    like a library (a `datasets/` folder of data hides Hugging Face's `datasets` from lerobot) would
    shadow it, so Ray starts from an empty folder of its own."""
    import tempfile

    here = os.getcwd()
    neutral = Path(tempfile.gettempdir()) / "headway-ray-cwd"
    neutral.mkdir(exist_ok=True)
    os.chdir(neutral)
    try:
        yield
    finally:
        os.chdir(here)


def worker_env() -> dict[str, str]:
    """Environment every Ray worker gets: offscreen MuJoCo rendering, and the test crash hook if set."""
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl")}
    if os.environ.get(CRASH_ONCE):
        env[CRASH_ONCE] = os.environ[CRASH_ONCE]
    return env


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, timeout: float = ADDRESS_TIMEOUT) -> None:
    """Connect to the Ray cluster at `address`, or start one on this machine; clear errors within `timeout` s."""
    import logging

    # Under `uv run`, Ray would zip the working directory and ship it to every worker as a
    # runtime_env (its uv hook). headway's workers need no upload: they run the same installed
    # environment (the driver's Python locally; the same install on every node of a cluster).
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray
    import ray._private.ray_constants as ray_constants

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] not in ("0", "false", "False")

    started = time.monotonic()
    if address:
        _probe_address(address, min(10.0, timeout))
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, logging_level=logging.ERROR, log_to_driver=True, runtime_env={"env_vars": worker_env()}
    )
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus)
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            with _neutral_cwd():
                ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    if not address:
        connect()
    else:  # ray.init retries an unresponsive GCS for minutes: give it the rest of the budget
        thread = threading.Thread(target=connect, daemon=True, name="headway-ray-connect")
        thread.start()
        thread.join(max(1.0, timeout - (time.monotonic() - started)))
        if thread.is_alive():
            raise HeadwayError(
                f"--address {address}: something listens there but no Ray cluster answered within {timeout:.0f} s; "
                "check that it is a Ray head node (`ray status` on it) and that this machine's Ray version matches"
            )
    error = outcome.get("error")
    if error is not None:
        if address:
            raise HeadwayError(f"--address {address}: cannot connect to Ray ({type(error).__name__}: {error}); "
                               "start a cluster with `ray start --head`, or leave --address out") from None
        raise error


def _crash_once() -> None:
    marker = os.environ.get(CRASH_ONCE)
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)  # a dead process, not an exception: what a lost node looks like to Ray


class _Hosted:
    """Runs inside a Ray actor: builds the area's worker object on first use (so its errors reach the
    driver as task errors, not as a dead actor) and calls its `method` on each item."""

    def __init__(self, cls: type, args: tuple) -> None:
        self.cls, self.args, self.target = cls, args, None

    def setup(self) -> str:
        """Build the worker object; returns this actor's node id (its items are prepared there)."""
        import ray

        if self.target is None:
            self.target = self.cls(*self.args)
        return ray.get_runtime_context().get_node_id()

    def call(self, method: str, item: Any, warm: bool = False) -> Any:
        if not warm:
            _crash_once()
        self.setup()
        return getattr(self.target, method)(item)


class _Preparer:
    """Runs inside a Ray actor beside a worker: prepares (decodes) the items that worker will take next."""

    def __init__(self, prepare: Callable[[Any], Any]) -> None:
        self.prepare = prepare

    def ready(self) -> bool:
        return True

    def call(self, item: Any) -> Any:
        return self.prepare(item)


def _unwrap(error: BaseException, what: str) -> BaseException:
    """A worker's HeadwayError as itself; a worker that died more than RETRIES times as a HeadwayError."""
    import ray.exceptions as rex

    if isinstance(error, rex.RayTaskError) and isinstance(error.cause, HeadwayError):
        return HeadwayError(str(error.cause))
    if isinstance(error, (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError)):
        return HeadwayError(
            f"{what}: a Ray worker died {RETRIES + 1} times in a row ({type(error).__name__}); "
            "look at the worker logs (`ray logs` or /tmp/ray/session_latest/logs), then rerun with --resume"
        )
    return error


class RaySession:
    """A Ray connection for one run: reuses an existing `ray.init` (tests, notebooks), else connects
    or starts one and shuts it down on exit. `startup_seconds` is what connecting cost."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.owned = False
        self.startup_seconds = 0.0  # connecting to or starting Ray
        self.warmup_seconds = 0.0  # the workers starting and building their state (last run)

    def __enter__(self) -> RaySession:
        import ray

        started = time.perf_counter()
        if not ray.is_initialized():
            local_cpus = max(os.cpu_count() or 1, self.settings.workers or 0) if not self.settings.address else None
            init_ray(self.settings.address, num_cpus=local_cpus)
            self.owned = True
        self.startup_seconds = time.perf_counter() - started
        self.workers = self._size()
        return self

    def __exit__(self, *exc) -> None:
        if self.owned:
            import ray

            ray.shutdown()

    def _size(self) -> int:
        """Workers this cluster can hold; clear errors for more GPUs or CPUs than it has."""
        import ray

        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        want_gpus = self.settings.gpus_per_worker
        if want_gpus > 0:
            if gpus <= 0:
                raise HeadwayError(
                    f"--gpus-per-worker {want_gpus:g}: the Ray cluster has no GPUs; leave the flag out to work on CPUs, "
                    "or add GPU nodes (`ray start --num-gpus N`)"
                )
            workers = self.settings.workers or int(gpus // want_gpus)
            if workers < 1 or workers * want_gpus > gpus + 1e-9:
                raise HeadwayError(
                    f"--workers {workers} x --gpus-per-worker {want_gpus:g} asks for {workers * want_gpus:g} GPUs; "
                    f"the Ray cluster has {gpus:g}; ask for fewer workers or fewer GPUs each"
                )
        else:
            workers = self.settings.workers or max(1, cpus)
        if workers > cpus:
            raise HeadwayError(
                f"--workers {workers} needs {workers} CPUs on the Ray cluster, which has {cpus}; "
                f"ask for at most {cpus} workers, or add nodes (`ray start --address HEAD:6379` on each)"
            )
        return workers

    def run(
        self,
        cls: type,
        args: tuple,
        items: Iterable[Any],
        on_result: Callable[[Any, Any], None],
        method: str = "run",
        prepare: Callable[[Any], Any] | None = None,
        ahead: int = 2,
        desc: str = "working",
        unit: str = "it",
        size: Callable[[Any], int] = lambda item: 1,
        name: Callable[[Any], str] = str,
        progress: bool = True,
        warm: Any = None,
    ) -> int:
        """Call `cls(*args).<method>(prepared item)` for every item on a pool of `self.workers` actors.

        Each actor holds one CPU (and `gpus_per_worker` GPUs) and is fed `ahead` items at a time.
        `prepare(item)`, when given, runs in a second actor on the same node, which prepares the
        next item while the worker works on the one before (the local path's decode-ahead thread,
        per worker; it holds no CPU of its own in Ray's accounting). `warm`, when given, is an item
        each worker prepares and runs once, its result dropped, before the clock of the work starts
        (imports, lazy initialisation; `warmup_seconds` measures it). The crash hook spares it.
        `on_result(item, result)` runs on the driver as each item finishes, in completion order.
        A dead worker is restarted and its items retried (RETRIES times). Returns the total `size`
        of the items done.
        """
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        from tqdm import tqdm

        items = list(items)
        if not items:
            return 0
        options: dict[str, Any] = dict(num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES, scheduling_strategy="SPREAD")
        if self.settings.gpus_per_worker > 0:
            options["num_gpus"] = self.settings.gpus_per_worker
        actors = [ray.remote(**options)(_Hosted).remote(cls, args) for _ in range(min(self.workers, len(items)))]
        warmup = time.perf_counter()
        preparers: list = []
        try:  # workers build their state (load a model, a simulator) before the clock of the work starts
            nodes = ray.get([actor.setup.remote() for actor in actors])
            if prepare is not None:  # one long-lived preparing process beside each worker (a task per item would
                # start processes that Ray's worker pool then reaps when idle: seconds of imports per item)
                preparer_class = ray.remote(num_cpus=0, max_restarts=RETRIES, max_task_retries=RETRIES)(_Preparer)
                preparers = [
                    preparer_class.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(prepare)
                    for node in nodes
                ]
            # one untimed item through each worker: imports, lazy initialisation, first-call costs
            if warm is not None:
                ray.get([actor.call.remote(method, preparers[i].call.remote(warm) if preparers else warm, True)
                         for i, actor in enumerate(actors)])
            ray.get([preparer.ready.remote() for preparer in preparers])
        except Exception as error:  # noqa: BLE001
            for actor in actors + preparers:
                ray.kill(actor, no_restart=True)
            raise _unwrap(error, f"{desc}: starting a worker") from None
        self.warmup_seconds = time.perf_counter() - warmup
        queue = deque(items)
        load = [0] * len(actors)
        inflight: dict[Any, tuple[Any, int]] = {}
        done = 0
        bar = tqdm(total=sum(size(item) for item in items), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
        try:
            while queue or inflight:
                for index, actor in enumerate(actors):
                    while queue and load[index] < max(1, ahead):
                        item = queue.popleft()
                        payload = preparers[index].call.remote(item) if preparers else item
                        inflight[actor.call.remote(method, payload)] = (item, index)
                        load[index] += 1
                ready, _ = ray.wait(list(inflight), num_returns=1)
                item, index = inflight.pop(ready[0])
                load[index] -= 1
                try:
                    result = ray.get(ready[0])
                except Exception as error:  # noqa: BLE001 - translated to the user's terms
                    raise _unwrap(error, f"{desc} {name(item)}") from None
                on_result(item, result)
                done += size(item)
                bar.update(size(item))
        finally:
            bar.close()
            for actor in actors + preparers:
                ray.kill(actor, no_restart=True)
        return done
