"""Simulation: robosuite tasks as Gymnasium envs, scripted experts with named stages, oracles."""

import logging
import os
import warnings

# MuJoCo picks its GL backend when robosuite is first imported; EGL renders offscreen without a display.
os.environ.setdefault("MUJOCO_GL", "egl")

_IMPORT_NOISE = (
    "private macro file",
    "setup_macros.py",
    "robosuite_models",
    "mink-based whole-body IK",
    "but the robot does not have this component",  # the BASIC composite config names every body part
)


def _quiet_robosuite(record: logging.LogRecord) -> bool:
    """Drop robosuite's INFO chatter and its import-time warnings about optional extras headway does not use."""
    if record.levelno < logging.WARNING:
        return False
    return not any(text in record.getMessage() for text in _IMPORT_NOISE)


logging.getLogger("robosuite_logs").addFilter(_quiet_robosuite)
# robosuite's logo string has an invalid escape; Python 3.12 warns each time it compiles the module
warnings.filterwarnings("ignore", message=r"invalid escape sequence", category=SyntaxWarning)  # no module= filter: compile-time warnings carry none
