"""The zone lookup: names for known ids, nulls (not errors) for the rest, loud failure on a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings
from app.zones import UNKNOWN_ZONE, Zone, load_zones


def test_bundled_lookup() -> None:
    zones = load_zones(Settings().zones_file)
    assert len(zones) == 260  # 263 rows: ids 56 and 103 repeat, 57, 104 and 105 are absent
    assert zones.get(1) == Zone("Newark Airport", "EWR")
    assert zones.get(161) == Zone("Midtown Center", "Manhattan")
    assert zones.get(103) == Zone("Governor's Island/Ellis Island/Liberty Island", "Manhattan")
    assert zones.get(264) is UNKNOWN_ZONE
    assert zones.get(10**12) == Zone(None, None)


def test_blank_cells_are_null_and_the_first_row_of_an_id_wins(tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    path.write_text("LocationID,zone,borough\n7,Astoria,\n8,,Queens\n7,Other,Queens\n")
    zones = load_zones(path)
    assert zones.get(7) == Zone("Astoria", None)
    assert zones.get(8) == Zone(None, "Queens")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,zone,borough\n1,a,b\n", "missing column"),
        ("LocationID,zone,borough\nx,a,b\n", "bad LocationID"),
    ],
)
def test_bad_file_fails_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "zones.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_zones(path)
    assert "zones.csv" in str(info.value)
