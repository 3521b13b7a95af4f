"""Hardware abstraction: arm and camera protocols, the safety layer, a fixed-rate loop, simulated and lerobot arms,
and the rollout controller that runs a policy with the process reward scoring live."""
