"""crossscale: cost-aware, cross-scale remote sensing in JAX/Flax."""
