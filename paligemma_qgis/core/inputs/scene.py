"""One scene of a run, and how its id and date are read from names and metadata.

Apart from ``scenes`` (which expands what the user gave) so that ``stac`` and ``scenes`` both
build scenes without importing each other.

A remote input may carry credentials (``https://user:pw@host/...``, a signed query): the real
path lives only in ``Scene.path``, in memory, for GDAL to open; ``source`` (what messages,
the GeoPackage and the journal show) is redacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..redact import redact

_VIRTUAL = ("/vsi", "s3://", "gs://", "http://", "https://", "az://")
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])(?!\d)")
# A month or a year only counts as the whole stem: inside a longer name it may be a tile number.
_STEM_MONTH_OR_YEAR = re.compile(r"^((?:19|20)\d\d)(?:[-_](0[1-9]|1[0-2]))?$")
# Raster metadata keys that hold the acquisition time (TIFFTAG_DATETIME is the file's, not the scene's).
_DATE_TAGS = (
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATETIME",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "datetime",
)


@dataclass(frozen=True)
class Scene:
    """One raster of a run. ``path`` is what GDAL opens (a VRT document for STAC items): it may
    hold credentials, so it stays in memory; everything shown or kept uses ``source``."""

    id: str
    path: str
    source: str  # what the user gave, redacted: the file, the URL, or "items.json#item-id"
    date: str | None = None  # ISO 8601 date or datetime
    # Cloud masks the scene's source offers: (kind, GDAL path), e.g. a STAC item's SCL asset as a
    # VRT on the scene's grid ("scl", "qa_pixel", or "s2bands": the bands s2cloudless reads).
    masks: tuple[tuple[str, str], ...] = ()
    key: str | None = None  # what the journal knows the scene by, when not ``path`` (a signed URL)

    @property
    def identity(self) -> str:
        """The scene's identity for the journal: its path, without a signature that changes."""
        return self.key if self.key is not None else self.path

    @property
    def label(self) -> str:
        """How messages name the scene (never with a credential)."""
        return redact(self.source)


def _virtual(text: str) -> str | None:
    """GDAL's spelling of a remote path (s3://b/k -> /vsis3/b/k), or None for a local one."""
    if text.startswith("/vsi"):
        return text
    for scheme, prefix in (("s3://", "/vsis3/"), ("gs://", "/vsigs/"), ("az://", "/vsiaz/")):
        if text.startswith(scheme):
            return prefix + text[len(scheme) :]
    if text.startswith(("http://", "https://")):
        return "/vsicurl/" + text
    return None


def date_from_name(name: str) -> str | None:
    """The ISO date a file name holds, at the precision it is written in, or None.

    ``YYYYMMDD``, ``YYYY-MM-DD`` or ``YYYY_MM_DD`` anywhere in the name gives ``YYYY-MM-DD``;
    a stem that is only ``YYYY-MM`` (or ``YYYY_MM``) gives ``YYYY-MM``, only a year ``YYYY``:
    a year is not a day, and ``change``/``occurrence`` select such dates by prefix.
    """
    base = Path(name).name
    m = _NAME_DATE.search(base)
    if m:
        return f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
    m = _STEM_MONTH_OR_YEAR.match(Path(base).stem)
    if m:
        return m.group(1) if m.group(2) is None else f"{m.group(1)}-{m.group(2)}"
    return None


def normalise_date(value: object) -> str | None:
    """'2020:08:31 10:00:00', '2020-08-31T10:00:00.123Z', '20200831' -> ISO 8601, or None."""
    if value is None:
        return None
    text = str(value).strip()
    m = re.match(
        r"^(\d{4})[-:]?(\d\d)[-:]?(\d\d)(?:[T ](\d\d):?(\d\d):?(\d\d)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)?)?$", text
    )
    if not m:
        return date_from_name(text)
    y, mo, d, hh, mm, ss, tz = m.groups()
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31):
        return None
    if hh is None:
        return f"{y}-{mo}-{d}"
    return f"{y}-{mo}-{d}T{hh}:{mm}:{ss}" + ("Z" if tz in (None, "Z") else tz)


def acquisition_date(tags: dict[str, str]) -> str | None:
    """The acquisition date from a raster's metadata tags, when a known key holds one."""
    for key in _DATE_TAGS:
        for k, v in tags.items():
            if k.upper() == key.upper():
                date = normalise_date(v)
                if date:
                    return date
    return None
