"""The StreamPulse Faust application.

``faust -A app worker`` looks up ``app.app``; it is created lazily so that the producers and the
API can import ``app.settings`` and ``app.events`` without building a Faust app.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from app.main import app

        return app
    raise AttributeError(name)
