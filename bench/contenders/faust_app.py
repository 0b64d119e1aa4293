"""What the two Faust contenders share: an app with Faust's defaults on the run's broker, and a
worker started from the contender's own process (``faust -A`` would need an importable module
path with the run's settings baked in)."""

from __future__ import annotations

import argparse

import faust


def faust_app(args: argparse.Namespace, store: str) -> faust.App:
    return faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store=store,
        datadir=str(args.data_dir),
        topic_partitions=args.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )


def run_worker(app: faust.App) -> None:
    faust.Worker(app, loglevel="warning").execute_from_commandline()
