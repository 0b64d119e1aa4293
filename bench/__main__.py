"""``python -m bench`` (``make bench``) and ``python -m bench --quick`` (``make bench-quick``).

The command itself is :func:`bench.cli.main`; this adds what every StreamPulse command has, the
package's ``--version`` and the one logging configuration (app/logs.py).
"""

import click

from app.logs import configure_logging
from app.settings import load_settings
from app.version import package_version
from bench.cli import main

click.version_option(package_version(), "--version", message="%(prog)s %(version)s")(main)
configure_logging(load_settings())
main()
