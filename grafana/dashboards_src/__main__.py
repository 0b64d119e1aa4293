"""``python -m grafana.dashboards_src [--check]``: see :mod:`grafana.dashboards_src.generate`."""

import sys

from .generate import main

sys.exit(main())
