"""Hardware abstraction: arm and camera protocols, safety layer, fixed-rate loop, rollout controller (not built yet)."""
