"""What the bench scripts print about the machine they measured on."""

from __future__ import annotations

import os


def load_note() -> str:
    """The load average, since figures on a shared machine depend on it."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"
