"""headway: multi-view process reward models for robot manipulation."""

__version__ = "0.1.0"
