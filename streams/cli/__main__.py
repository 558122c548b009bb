"""``python -m driftline.streams.cli``: the same as the ``driftline`` command."""

from driftline.streams.cli.main import main

main()
