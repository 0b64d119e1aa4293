"""``python -m producers.replay``: the replayer's entry point (the command lives in :mod:`producers.cli`)."""

from producers.cli import main

if __name__ == "__main__":
    main()
