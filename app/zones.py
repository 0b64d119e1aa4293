"""Region names from the TLC zone lookup (``LocationID,zone,borough``).

Read once at start-up (never per request, so no file I/O on the event loop). A region id the
lookup does not know still works everywhere; it is served with ``region_name``/``borough`` null,
because events may carry ids (TLC's 264/265 "unknown" zones, or a non-TLC source) with no name.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_COLUMNS = ("LocationID", "zone", "borough")


@dataclass(frozen=True, slots=True)
class Zone:
    name: str | None
    borough: str | None


UNKNOWN_ZONE = Zone(None, None)


class ZoneLookup:
    __slots__ = ("_zones",)

    def __init__(self, zones: Mapping[int, Zone]) -> None:
        self._zones = dict(zones)

    def __len__(self) -> int:
        return len(self._zones)

    def get(self, region_id: int) -> Zone:
        return self._zones.get(region_id, UNKNOWN_ZONE)

    def items(self) -> list[tuple[int, Zone]]:
        return list(self._zones.items())


def load_zones(path: Path) -> ZoneLookup:
    """Parse the lookup; a missing column or a bad id fails start-up naming the file and line.

    The bundled file repeats some ids (TLC's zones 56 and 103 have several polygons); the first row
    of an id wins.
    """
    zones: dict[int, Zone] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        for row in reader:
            try:
                region_id = int(row["LocationID"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{reader.line_num}: bad LocationID {row['LocationID']!r}") from None
            zone = Zone((row["zone"] or "").strip() or None, (row["borough"] or "").strip() or None)
            zones.setdefault(region_id, zone)
    return ZoneLookup(zones)
