"""Band roles and sensor presets: which band is red, green, NIR ... (pure Python, no raster I/O).

Apart from raster.py so that the QGIS dialog can tell, before a run, whether the roles an
engine needs are known (from band descriptions or a preset), with the same rules the core
applies: a file that names its bands is trusted over a preset's guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ROLES = ("red", "green", "blue", "nir", "swir")


@dataclass(frozen=True)
class Preset:
    """A sensor's usual band order: RGB rendering bands and band roles (1-based)."""

    rgb: tuple[int, int, int]
    roles: dict[str, int]
    # Per band count, a different role table (e.g. Sentinel-2 L2A has no B10).
    roles_by_count: dict[int, dict[str, int]] | None = None
    code_table: dict[str, str] | None = None  # band code ("8A", "11") -> role, for descriptions
    counts: tuple[int, ...] | None = None  # band counts the order is known for (None: any)

    def roles_for(self, count: int) -> dict[str, int]:
        if self.roles_by_count and count in self.roles_by_count:
            return self.roles_by_count[count]
        return self.roles


_S2_CODES = {"2": "blue", "3": "green", "4": "red", "8": "nir", "11": "swir"}
_LANDSAT89_CODES = {"2": "blue", "3": "green", "4": "red", "5": "nir", "6": "swir"}

PRESETS: dict[str, Preset] = {
    # Sentinel-2 L1C, 13 bands B1..B8, B8A, B9, B10, B11, B12 (B11 is band 12); L2A (12 bands, no B10).
    "sentinel2": Preset(
        rgb=(4, 3, 2),
        roles={"red": 4, "green": 3, "blue": 2, "nir": 8, "swir": 12},
        roles_by_count={12: {"red": 4, "green": 3, "blue": 2, "nir": 8, "swir": 11}},
        code_table=_S2_CODES,
        counts=(12, 13),
    ),
    # Landsat 8/9 OLI: B1 coastal, B2 blue, B3 green, B4 red, B5 NIR, B6 SWIR1, B7 SWIR2.
    "landsat89": Preset(
        rgb=(4, 3, 2),
        roles={"red": 4, "green": 3, "blue": 2, "nir": 5, "swir": 6},
        code_table=_LANDSAT89_CODES,
        counts=tuple(range(6, 13)),  # B1..B6 at least; up to B1..B11 plus QA
    ),
    # NAIP: R, G, B, NIR.
    "naip": Preset(rgb=(1, 2, 3), roles={"red": 1, "green": 2, "blue": 3, "nir": 4}),
}

_CODE_RE = re.compile(r"^(?:.*[_\s-])?b0?(\d{1,2}a?)$")


def _role_from_description(desc: str | None, code_table: dict[str, str] | None) -> str | None:
    if not desc:
        return None
    d = desc.strip().lower()
    if "swir" in d:
        return None if re.search(r"swir[\s_-]?2", d) else "swir"
    if "nir" in d or "near infrared" in d or "near-infrared" in d:
        return "nir"
    if "edge" in d:  # red edge
        return None
    for role in ("green", "red", "blue"):
        if re.search(rf"\b{role}\b", d):
            return role
    m = _CODE_RE.match(d)
    if m and code_table:
        return code_table.get(m.group(1))
    return None


def roles_from_descriptions(descriptions: Sequence[str | None], preset: str | None = None) -> dict[str, int]:
    """Band roles named by the file itself; band codes (B3, B8A) need a known sensor."""
    code_table = PRESETS[preset].code_table if preset in PRESETS else None
    lowered = [(d or "").strip().lower() for d in descriptions]
    if code_table is None and any(d in ("b8a", "b08a") or d.endswith("_b8a") for d in lowered):
        code_table = _S2_CODES  # a B8A band only exists on Sentinel-2
    roles: dict[str, int] = {}
    for i, desc in enumerate(descriptions, start=1):
        role = _role_from_description(desc, code_table)
        if role and role not in roles:
            roles[role] = i
    return roles
