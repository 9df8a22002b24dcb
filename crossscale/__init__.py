"""crossscale: cost-aware, cross-scale remote-sensing understanding in JAX/Flax."""
