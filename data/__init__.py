"""Dataset builders and data tools; each runs as `python -m data.<tool>`."""
