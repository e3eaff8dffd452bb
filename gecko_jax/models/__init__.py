"""Flax encoders, the dual-encoder head and weight import."""
