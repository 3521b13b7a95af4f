"""Simulation: robosuite tasks as Gymnasium envs, scripted experts with named stages, oracles."""

import os

# MuJoCo picks its GL backend when robosuite is first imported; EGL renders offscreen without a display.
os.environ.setdefault("MUJOCO_GL", "egl")
