"""Pallas kernels, each beside its plain-JAX reference and one dispatcher."""
