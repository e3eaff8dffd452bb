"""Tests of the FRet pipeline (gecko_jax/fret)."""
