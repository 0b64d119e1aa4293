"""``--version`` of every command: the package metadata, or the checkout's setup.cfg."""

from __future__ import annotations

from pathlib import Path

from app.version import _checkout_version, package_version, version_line


def test_the_version_is_the_package_metadata_or_the_checkout_setup_cfg(tmp_path: Path) -> None:
    assert package_version() == _checkout_version(Path(__file__).resolve().parents[2] / "setup.cfg")
    assert version_line("streampulse-replay") == f"streampulse-replay {package_version()}"
    assert _checkout_version(tmp_path / "missing.cfg") == "0+unknown"
