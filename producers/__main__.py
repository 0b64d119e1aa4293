"""``python -m producers``: the same command as ``python -m producers.replay``."""

from producers.cli import main

main()
