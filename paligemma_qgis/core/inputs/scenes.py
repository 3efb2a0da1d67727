"""The scenes of a run: what ``segment IN... OUT`` was given, expanded into rasters with an id and a date.

An input is a raster file, a GDAL virtual path (``/vsicurl/``, ``/vsis3/``, ``s3://`` ...), a
VRT, a folder (its rasters, sorted by name), a glob (``"scenes/*.tif"``), a text file of
inputs (one per line, ``#`` comments, relative to the list's folder), or a local STAC Item or
ItemCollection JSON (see ``stac``). Expansion is lazy about the rasters themselves: nothing
is opened here, so a thousand scenes cost a thousand path checks.

A scene's id is its file stem (or STAC item id), made unique with ``_2``, ``_3``... in input
order. Its date comes from STAC, else from a date in the file name (``..._20200831...``,
``2020-08-31``, ``2020_08_31``; a stem that is only ``2020-08`` or a year, ``1985.tif``, dates
the scene to that month or year, at that precision); ``acquisition_date`` reads the raster's
own metadata when the scene is opened.


A remote input may carry credentials (``https://user:pw@host/...``, a signed query): the real
path lives only in ``Scene.path``, in memory, for GDAL to open; ``source`` (what messages,
the GeoPackage and the journal show) is redacted, and the id and date come from the file name
alone (``redact.scene_stem``), never from the query.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..redact import redact, scene_stem

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".ntf", ".nc", ".hdf", ".h5")
LIST_SUFFIXES = (".txt", ".lst", ".list")
STAC_SUFFIXES = (".json", ".geojson")
_VIRTUAL = ("/vsi", "s3://", "gs://", "http://", "https://", "az://")
_GLOB = re.compile(r"[*?\[]")
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


def _is_raster_name(name: str) -> bool:
    return name.lower().endswith(RASTER_SUFFIXES)


def _expand(
    text: str, base: Path | None, seen_lists: set[Path], stac: tuple[list[str] | None, str]
) -> list[Scene]:
    virtual = _virtual(text)
    if virtual is not None:
        stem = scene_stem(virtual)
        return [Scene(stem, virtual, redact(text), date_from_name(stem))]
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.exists() and _GLOB.search(text):
        matches = sorted(glob.glob(str(path)))
        if not matches:
            raise InputError("glob_no_match", field="raster", pattern=text)
        return [s for m in matches for s in _expand(m, None, seen_lists, stac)]
    if not path.exists():
        raise InputError("input_not_found", field="raster", path=text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _is_raster_name(p.name))
        if not files:
            suffixes = ", ".join(RASTER_SUFFIXES[:4])
            raise InputError("folder_no_raster", field="raster", path=str(path), suffixes=suffixes)
        return [Scene(p.stem, str(p), str(p), date_from_name(p.name)) for p in files]
    suffix = path.suffix.lower()
    if suffix in LIST_SUFFIXES:
        resolved = path.resolve()
        if resolved in seen_lists:
            raise InputError("input_list_loop", field="raster", path=str(path))
        seen_lists.add(resolved)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                "input_list_unreadable", field="raster", path=str(path), detail=str(exc)
            ) from None
        entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not entries:
            raise InputError("input_list_empty", field="raster", path=str(path))
        return [s for e in entries for s in _expand(e, path.parent, seen_lists, stac)]
    if suffix in STAC_SUFFIXES:
        from .stac import stac_scenes

        return stac_scenes(path, *stac)
    return [Scene(path.stem, str(path), str(path), date_from_name(path.name))]


def resolve_inputs(
    inputs: list[str], *, stac_bands: list[str] | None = None, engine: str = "water-index"
) -> list[Scene]:
    """Every scene the inputs name, in order, without duplicates, with unique ids."""
    if not inputs:
        raise InputError("input_missing", field="raster")
    scenes: list[Scene] = []
    seen_lists: set[Path] = set()
    for text in inputs:
        scenes.extend(_expand(str(text), None, seen_lists, (stac_bands, engine)))
    unique: dict[str, Scene] = {}
    for s in scenes:
        key = s.path if s.path.startswith("<") else _canonical(s.path)
        unique.setdefault(key, s)
    out: list[Scene] = []
    taken: set[str] = set()
    for s in unique.values():
        sid, n = s.id or "scene", 1
        while sid in taken:
            n += 1
            sid = f"{s.id}_{n}"
        taken.add(sid)
        out.append(Scene(sid, s.path, s.source, s.date) if sid != s.id else s)
    return out


def _canonical(path: str) -> str:
    if path.startswith("/vsi"):
        return path
    try:
        return str(Path(path).resolve())
    except OSError:
        return path
