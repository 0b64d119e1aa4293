"""``python -m bench`` (``make bench``) and ``python -m bench --quick`` (``make bench-quick``)."""

from bench.cli import main

main()
