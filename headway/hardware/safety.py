"""The safety layer: wraps any `Arm` so that whatever the policy or the network does, the arm is safe.

Every command passes, per action dimension, through interval constraints in priority order:

1. `limits`      the vendor command limits `[low, high]` (always hold);
2. `step`        the change of the target from the *measured* state (`max_step`);
3. `velocity`    the target speed relative to the last command sent (`max_velocity`);
4. `joint_limits` / `workspace`  the joint range or workspace box shrunk by `margin` at both ends.

The command is the policy's action clipped into the intersection; when a constraint cannot be met
together with the ones before it, the command stays inside the earlier ones at the point nearest
to it (so with the measured state inside the vendor limits, commands always respect limits and
step). Wrongly-shaped or non-finite actions are rejected: the arm holds its position instead.

A watchdog thread holds the arm when no valid command came within `watchdog_timeout` seconds (a
stalled policy or reward model), and performs emergency stops requested from signal handlers.
`emergency_stop()` (from code, a signal or the keyboard) holds the arm and every later command
is replaced by a hold. Every intervention is counted and logged with its reason.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from headway.errors import HeadwayError
from headway.hardware.protocols import ABSOLUTE, COMMAND, DELTA, Arm, ArmLimits, ArmObservation

log = logging.getLogger(__name__)

# reason -> bit of the per-frame `safety.reasons` mask recorded in datasets
REASONS = {
    "shape": 1,
    "non_finite": 2,
    "limits": 4,
    "step": 8,
    "velocity": 16,
    "joint_limits": 32,
    "workspace": 64,
    "watchdog": 128,
    "estop": 256,
}


@dataclass
class SafetyConfig:
    """How strict the safety layer is (on top of the limits the arm declares)."""

    margin: float = 0.02  # fraction of each joint range / workspace side kept free at both ends
    max_step_scale: float = 1.0  # multiplies the arm's max_step
    max_velocity_scale: float = 1.0  # multiplies the arm's max_velocity
    watchdog_timeout: float | None = 0.5  # seconds without a valid command before holding; None: off
    watchdog_grace: float = 2.0  # extra seconds allowed for an episode's first command (model warm-up, first frames)

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 0.5:
            raise HeadwayError(f"safety margin must be a fraction in [0, 0.5), got {self.margin}")
        if not (self.max_step_scale > 0 and self.max_velocity_scale > 0):
            raise HeadwayError("safety scales must be positive")
        if self.watchdog_grace < 0:
            raise HeadwayError(f"watchdog grace must be >= 0 seconds, got {self.watchdog_grace}")
        if self.watchdog_timeout is not None and not self.watchdog_timeout > 0:
            raise HeadwayError(f"watchdog timeout must be positive seconds or None, got {self.watchdog_timeout}")


@dataclass
class Intervention:
    time: float
    reason: str
    detail: str = ""


@dataclass
class _Constraint:
    name: str
    low: np.ndarray
    high: np.ndarray


@dataclass
class SafetyReport:
    counts: dict[str, int] = field(default_factory=dict)
    log: list[Intervention] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SafetyLayer:
    """An `Arm` that wraps another and makes every command safe (see the module docstring)."""

    def __init__(self, arm: Arm, config: SafetyConfig | None = None, clock=time.monotonic) -> None:
        self.arm = arm
        self.config = config or SafetyConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self.counts: Counter[str] = Counter()
        self.log: list[Intervention] = []
        self._step_mask = 0
        self._step_count = 0
        self._last_obs: ArmObservation | None = None
        self._last_sent: np.ndarray | None = None
        self._last_valid = clock()
        self._watchdog_armed = False
        self._watchdog_held = False
        self.watchdog_tripped = False
        self._stop_requested: str | None = None
        self.stopped: str | None = None  # reason of the emergency stop, once stopped
        self._thread: threading.Thread | None = None
        self._quit = threading.Event()
        self.limits = arm.limits

    # -- Arm protocol, delegated ---------------------------------------------------------------------
    name = property(lambda self: f"safe({self.arm.name})")
    observation_features = property(lambda self: self.arm.observation_features)
    action_features = property(lambda self: self.arm.action_features)
    views = property(lambda self: self.arm.views)
    control_period = property(lambda self: self.arm.control_period)
    is_connected = property(lambda self: self.arm.is_connected)
    is_simulated = property(lambda self: self.arm.is_simulated)

    def connect(self) -> None:
        self.arm.connect()
        self._quit.clear()
        self._thread = threading.Thread(target=self._watch, name="safety-watchdog", daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        """Hold, stop the watchdog, disconnect the arm (each step runs even if an earlier one fails)."""
        try:
            if self.arm.is_connected:
                self.hold("disconnect")
        except Exception as error:  # noqa: BLE001
            log.error("could not hold the arm before disconnecting: %s", error)
        finally:
            self._quit.set()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
                self._thread = None
            self.arm.disconnect()

    def __enter__(self) -> SafetyLayer:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def reset_episode(self, seed: int | None = None) -> None:
        with self._lock:
            self.arm.reset_episode(seed)
            self._last_obs = None
            self._last_sent = None
            self.watchdog_tripped = False
            self._watchdog_held = False

    def get_observation(self) -> ArmObservation:
        with self._lock:
            obs = self.arm.get_observation()
            self._last_obs = obs
            return obs

    # -- commands ------------------------------------------------------------------------------------
    def send_action(self, action) -> np.ndarray:
        """Make `action` safe, send it, and return what was sent."""
        with self._lock:
            if self.stopped or self._stop_requested:
                self._do_stop()
                return self._last_sent.copy()
            safe = self.check(action)
            if safe is None:
                return self._send(self.hold_action())
            self._last_valid = self._clock()
            self._watchdog_held = False
            return self._send(safe)

    def check(self, action) -> np.ndarray | None:
        """The safe version of `action`, or None if it must be rejected (then hold)."""
        limits = self.limits
        try:
            raw = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            self._intervene("shape", f"not a numeric array: {type(action).__name__}")
            return None
        if raw.shape != (limits.dim,):
            self._intervene("shape", f"shape {raw.shape}, expected ({limits.dim},)")
            return None
        if not np.all(np.isfinite(raw)):
            self._intervene("non_finite", f"NaN/inf at {np.flatnonzero(~np.isfinite(raw)).tolist()}")
            return None
        low, high = self._interval()
        safe = np.clip(raw, low, high)
        if np.any(safe != raw):
            for constraint in self._constraints():
                outside = (raw < constraint.low) | (raw > constraint.high)
                if np.any(outside):
                    names = [limits.names[i] for i in np.flatnonzero(outside)]
                    self._intervene(constraint.name, f"clipped {', '.join(names)}")
        return safe

    def hold_action(self) -> np.ndarray:
        """The command that keeps the arm where it is."""
        limits = self.limits
        state = self._fresh_state()
        hold = limits.hold.copy()
        for i, kind in enumerate(limits.kind):
            if kind == ABSOLUTE:
                hold[i] = state[limits.state_index[i]]
            elif kind == DELTA:
                hold[i] = 0.0
            elif self._last_sent is not None:
                hold[i] = self._last_sent[i]
        return np.clip(hold, limits.low, limits.high)

    def hold(self, reason: str = "hold") -> np.ndarray:
        with self._lock:
            return self._send(self.hold_action())

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """Hold now, and replace every later command by a hold (callable from any thread but a signal handler)."""
        with self._lock:
            self._stop_requested = self._stop_requested or reason
            self._do_stop()

    def request_stop(self, reason: str) -> None:
        """Ask for an emergency stop without blocking (safe inside a signal handler); the watchdog thread holds."""
        self._stop_requested = self._stop_requested or reason

    @property
    def stop_pending(self) -> bool:
        return bool(self.stopped or self._stop_requested)

    def _do_stop(self) -> None:
        if not self.stopped:
            self.stopped = self._stop_requested or "emergency stop"
            self._intervene("estop", self.stopped)
            log.warning("emergency stop: %s; holding the arm", self.stopped)
        self._send(self.hold_action())

    # -- watchdog ------------------------------------------------------------------------------------
    def arm_watchdog(self) -> None:
        """Start expecting a valid command every `watchdog_timeout` seconds (call when an episode starts)."""
        with self._lock:
            self._last_valid = self._clock() + self.config.watchdog_grace
            self._watchdog_armed = True
            self._watchdog_held = False
            self.watchdog_tripped = False

    def disarm_watchdog(self) -> None:
        self._watchdog_armed = False

    def _watch(self) -> None:
        timeout = self.config.watchdog_timeout
        tick = min(0.02, timeout / 5) if timeout else 0.02
        while not self._quit.wait(tick):
            try:
                if self._stop_requested and not self.stopped:
                    with self._lock:
                        self._do_stop()
                    continue
                if timeout is None or not self._watchdog_armed or self._watchdog_held:
                    continue
                silent = self._clock() - self._last_valid
                if silent > timeout:
                    with self._lock:
                        if self._clock() - self._last_valid <= timeout or self._watchdog_held:
                            continue
                        self._watchdog_held = True
                        self.watchdog_tripped = True
                        self._intervene("watchdog", f"no valid command for {1e3 * silent:.0f} ms")
                        self._send(self.hold_action())
            except Exception as error:  # noqa: BLE001 - the watchdog must survive a failing arm
                log.error("watchdog could not hold the arm: %s", error)

    # -- bookkeeping ---------------------------------------------------------------------------------
    def take_step_interventions(self) -> tuple[int, int]:
        """(count, reason bit mask) of interventions since the last call (one call per control step)."""
        with self._lock:
            out = (self._step_count, self._step_mask)
            self._step_count = self._step_mask = 0
            return out

    def report(self) -> SafetyReport:
        return SafetyReport(dict(self.counts), list(self.log))

    def _intervene(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        self._step_count += 1
        self._step_mask |= REASONS[reason]
        self.log.append(Intervention(self._clock(), reason, detail))
        if len(self.log) > 10_000:
            del self.log[:5_000]
        log.info("safety %s: %s", reason, detail)

    def _send(self, command: np.ndarray) -> np.ndarray:
        sent = np.asarray(self.arm.send_action(command.astype(np.float32)), dtype=np.float64)
        self._last_sent = sent.copy()
        return sent.astype(np.float32)

    def _measured_state(self) -> np.ndarray:
        if self._last_obs is None:
            self._last_obs = self.arm.get_observation()
        return np.asarray(self._last_obs.state, dtype=np.float64)

    def _fresh_state(self) -> np.ndarray:
        """The state measured now (`read_state()` if the arm has it, which skips the cameras); the last one if reading fails."""
        try:
            reader = getattr(self.arm, "read_state", None)
            if reader is not None:
                return np.asarray(reader(), dtype=np.float64)
            self._last_obs = self.arm.get_observation()
        except Exception as error:  # noqa: BLE001 - a dead camera must not stop us holding
            log.warning("holding at the last measured state: reading the arm failed (%s)", error)
        return self._measured_state()

    def _constraints(self) -> list[_Constraint]:
        """Each constraint as an interval of the action, in priority order."""
        limits, cfg = self.limits, self.config
        n = limits.dim
        state = self._measured_state() if any(i is not None for i in limits.state_index) else None
        measured = np.array(
            [state[i] if (i is not None and state is not None) else np.nan for i in limits.state_index]
        )
        absolute = np.array([k == ABSOLUTE for k in limits.kind])
        delta = np.array([k == DELTA for k in limits.kind])
        command = np.array([k == COMMAND for k in limits.kind])
        gain = limits.gain
        dt = self.arm.control_period or self._period_hint
        max_step = limits.max_step * cfg.max_step_scale
        max_move = limits.max_velocity * cfg.max_velocity_scale * dt
        previous = self._last_sent if self._last_sent is not None else np.where(absolute, measured, np.nan)
        inf = np.full(n, np.inf)

        step_low = np.where(absolute, measured - max_step, np.where(delta, -max_step / gain, -inf))
        step_high = np.where(absolute, measured + max_step, np.where(delta, max_step / gain, inf))
        relative = absolute | command
        has_previous = np.isfinite(previous)
        vel_low = np.where(relative & has_previous, previous - max_move, np.where(delta, -max_move / gain, -inf))
        vel_high = np.where(relative & has_previous, previous + max_move, np.where(delta, max_move / gain, inf))
        vel_low = np.where(np.isnan(vel_low), -inf, vel_low)
        vel_high = np.where(np.isnan(vel_high), inf, vel_high)

        span = limits.target_high - limits.target_low
        box_low = limits.target_low + cfg.margin * np.where(np.isfinite(span), span, 0.0)
        box_high = limits.target_high - cfg.margin * np.where(np.isfinite(span), span, 0.0)
        joint_low, joint_high = np.where(absolute, box_low, -inf), np.where(absolute, box_high, inf)
        has_box = delta & np.isfinite(measured)
        with np.errstate(invalid="ignore"):
            work_low = np.where(has_box, (box_low - measured) / gain, -inf)
            work_high = np.where(has_box, (box_high - measured) / gain, inf)
        work_low = np.where(np.isnan(work_low), -inf, work_low)
        work_high = np.where(np.isnan(work_high), inf, work_high)
        return [
            _Constraint("limits", limits.low, limits.high),
            _Constraint("step", step_low, step_high),
            _Constraint("velocity", vel_low, vel_high),
            _Constraint("joint_limits", joint_low, joint_high),
            _Constraint("workspace", work_low, work_high),
        ]

    _period_hint = 0.05  # seconds per command when the arm runs on wall time; the controller sets 1/fps

    def set_rate(self, fps: float) -> None:
        self._period_hint = 1.0 / fps

    def _interval(self) -> tuple[np.ndarray, np.ndarray]:
        constraints = self._constraints()
        low, high = constraints[0].low.copy(), constraints[0].high.copy()
        for c in constraints[1:]:
            new_low, new_high = np.maximum(low, c.low), np.minimum(high, c.high)
            empty = new_low > new_high
            # infeasible together with the earlier constraints: the nearest point of the earlier interval
            nearest = np.clip(np.where(c.high < low, low, high), low, high)
            low = np.where(empty, nearest, new_low)
            high = np.where(empty, nearest, new_high)
        return low, high


@contextmanager
def stop_on_signals(safety: SafetyLayer, signals=(signal.SIGINT, signal.SIGTERM)):
    """While inside: the first SIGINT/SIGTERM requests an emergency stop (the loop ends in the safe state);
    a second one raises KeyboardInterrupt (cleanup in `finally` still holds and disconnects)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if safety.stop_pending:
            raise KeyboardInterrupt(name)
        safety.request_stop(f"signal {name}")

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class KeyboardStop:
    """Reads lines from stdin in a thread: during an episode, Enter (or 'q') is an emergency stop.

    Between episodes `prompt()` waits for Enter to continue, or 'q' to quit.
    """

    def __init__(self, safety: SafetyLayer, stream=None) -> None:
        import queue

        self.safety = safety
        self.stream = stream or sys.stdin
        self.lines: queue.Queue[str] = queue.Queue()
        self.in_episode = False
        self._thread = threading.Thread(target=self._run, name="keyboard-stop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self.stream:
            if self.in_episode:
                self.safety.request_stop("keyboard")
            else:
                self.lines.put(line.strip().lower())

    def prompt(self, message: str) -> bool:
        """Print `message`, wait for a line; False if the user typed q (quit)."""
        print(message, flush=True)
        while True:
            try:
                line = self.lines.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - queue.Empty
                if self.safety.stop_pending:
                    return False
                continue
            return line not in ("q", "quit")
