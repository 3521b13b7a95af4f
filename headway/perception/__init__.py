"""Perception: frame encoders (conv, frozen Hugging Face towers), feature cache, image preprocessing."""
