"""Cameras read asynchronously: a reader thread keeps the newest frame with its capture time.

`ThreadedCamera(name, grab)` turns any blocking frame source (a lerobot `Camera`'s `read`, an
OpenCV capture, a test fake) into a `Camera`: `read()` never blocks on the device; it returns
the newest frame, and raises `CameraError` when the frame is older than `max_age` seconds (a
hung device) or when the reader thread died (an unplugged device).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from headway.hardware.protocols import CameraError, Frame

log = logging.getLogger(__name__)


class ThreadedCamera:
    """Newest-frame camera over a blocking `grab() -> HxWx3 uint8` source."""

    def __init__(
        self,
        name: str,
        grab: Callable[[], np.ndarray],
        max_age: float = 0.5,
        first_frame_timeout: float = 5.0,
        open_device: Callable[[], None] | None = None,
        close_device: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.max_age = float(max_age)
        self.first_frame_timeout = float(first_frame_timeout)
        self._grab, self._open, self._close, self._clock = grab, open_device, close_device, clock
        self._lock = threading.Lock()
        self._new_frame = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frame: Frame | None = None
        self._error: BaseException | None = None
        self._count = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def connect(self) -> None:
        if self._thread is not None:
            return
        if self._open is not None:
            self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        if not self._new_frame.wait(self.first_frame_timeout):
            self.disconnect()
            raise CameraError(
                f"camera {self.name!r} gave no frame within {self.first_frame_timeout:g} s of connecting; "
                "check the cable, the device path and that no other program holds the camera"
            )
        if self._error is not None and self._frame is None:
            error = self._error
            self.disconnect()
            raise CameraError(f"camera {self.name!r} failed while starting: {error}") from error

    def disconnect(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1.0)
        if self._close is not None:
            try:
                self._close()
            except Exception as error:  # noqa: BLE001 - closing must not mask the reason we stopped
                log.warning("camera %s: error while closing: %s", self.name, error)

    @property
    def is_connected(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def __enter__(self) -> ThreadedCamera:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    # -- reading -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                image = self._grab()
            except BaseException as error:  # noqa: BLE001 - any failure means the device is gone
                self._error = error
                self._new_frame.set()
                return
            now = self._clock()
            with self._lock:
                self._count += 1
                self._frame = Frame(np.asarray(image), now, self._count)
            self._new_frame.set()

    def read(self) -> Frame:
        """The newest frame; `CameraError` if the device died or the frame is older than `max_age`."""
        if self._error is not None:
            raise CameraError(f"camera {self.name!r} is dead: {type(self._error).__name__}: {self._error}")
        if self._thread is None:
            raise CameraError(f"camera {self.name!r} is not connected; call connect() first")
        if not self._thread.is_alive():
            raise CameraError(f"camera {self.name!r}: its reader thread stopped")
        with self._lock:
            frame = self._frame
        if frame is None:
            raise CameraError(f"camera {self.name!r} has not captured a frame yet")
        age = frame.age(self._clock())
        if age > self.max_age:
            raise CameraError(
                f"camera {self.name!r} is stale: newest frame is {1e3 * age:.0f} ms old (limit {1e3 * self.max_age:.0f} ms)"
            )
        return frame


class StaticCamera:
    """A camera that serves the frames it is given, stamped when given (simulation, benchmarks, tests)."""

    def __init__(self, name: str, max_age: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.max_age = float(max_age)
        self._clock = clock
        self._frame: Frame | None = None
        self._connected = False
        self.dead = False
        self.hung = False

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected and not self.dead

    def put(self, image: np.ndarray, timestamp: float | None = None) -> None:
        if self.hung:
            return
        index = self._frame.index + 1 if self._frame else 1
        self._frame = Frame(image, self._clock() if timestamp is None else timestamp, index)

    def touch(self) -> None:
        """The scene has not changed since the newest frame (a paused simulation): it is still current."""
        if self._frame is not None and not self.hung:
            self._frame = Frame(self._frame.image, self._clock(), self._frame.index)

    def hang(self) -> None:
        """Fault injection: stop taking frames, so the newest one goes stale."""
        self.hung = True

    def kill(self) -> None:
        """Fault injection: the device is gone."""
        self.dead = True

    def read(self) -> Frame:
        if self.dead:
            raise CameraError(f"camera {self.name!r} is dead")
        if not self._connected or self._frame is None:
            raise CameraError(f"camera {self.name!r} is not connected or has no frame yet")
        age = self._frame.age(self._clock())
        if age > self.max_age:
            raise CameraError(
                f"camera {self.name!r} is stale: newest frame is {1e3 * age:.0f} ms old (limit {1e3 * self.max_age:.0f} ms)"
            )
        return self._frame
