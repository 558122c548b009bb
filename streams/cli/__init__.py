"""The `driftline` command line (``python -m driftline.streams.cli``)."""
