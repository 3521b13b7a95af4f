"""Policy learning: reward-aligned behaviour cloning and online RL (not built yet)."""
