"""The contenders: each peer runs as its own process (``python -m bench.contenders.<name>``) and
reports to the harness through :mod:`bench.contenders.report`; StreamPulse is driven as
``faust -A app worker`` by :mod:`bench.streampulse`."""
