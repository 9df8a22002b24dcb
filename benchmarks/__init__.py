"""Benchmarks: scripts with --quick that print a table and write JSON."""
