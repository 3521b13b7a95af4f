"""A tiny lerobot policy plugin for the RA-BC-through-lerobot test: an MLP over the state with a
per-sample loss (`forward(batch, reduction="none")`), which lerobot's sample weighting requires and
its small built-in policies (ACT, Diffusion) lack (lerobot issue #4221)."""

from . import configuration_rabc_test_mlp  # noqa: F401  (registers the policy type)
