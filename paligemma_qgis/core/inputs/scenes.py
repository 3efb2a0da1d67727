"""The scenes of a run: what ``segment IN... OUT`` was given, expanded into rasters with an id and a date.

An input is a raster file, a GDAL virtual path (``/vsicurl/``, ``/vsis3/``, ``s3://`` ...), a
VRT, a folder (its rasters, sorted by name; with ``recursive`` its subfolders' too, else those
are said, not mapped), a glob (``"scenes/*.tif"``, ``"scenes/**/*.tif"`` for every level), a
text file of inputs (one per line, ``#`` comments, relative to the list's folder), or a local
STAC Item or ItemCollection JSON (see ``stac``). Expansion is lazy about the rasters themselves: nothing
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

import dataclasses
import glob
import logging
import re
from collections import Counter
from pathlib import Path

from ..errors import InputError
from ..redact import redact, scene_stem
from ..rules import LIST_SUFFIXES, RASTER_SUFFIXES, STAC_SUFFIXES
from .scene import (  # noqa: F401 - re-exported: callers know them from here
    Scene,
    _virtual,
    acquisition_date,
    date_from_name,
    normalise_date,
)
from .stac import stac_scenes

log = logging.getLogger(__name__)

_GLOB = re.compile(r"[*?\[]")


def _is_raster_name(name: str) -> bool:
    return name.lower().endswith(RASTER_SUFFIXES)


def _expand(
    text: str,
    base: Path | None,
    seen_lists: set[Path],
    stac: tuple[list[str] | None, str, str],
    recursive: bool = False,
) -> list[Scene]:
    virtual = _virtual(text)
    if virtual is not None:
        stem = scene_stem(virtual)
        return [Scene(stem, virtual, redact(text), date_from_name(stem))]
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.exists() and _GLOB.search(text):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise InputError("glob_no_match", field="raster", pattern=text)
        return [s for m in matches for s in _expand(m, None, seen_lists, stac, recursive)]
    if not path.exists():
        raise InputError("input_not_found", field="raster", path=text)
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
        files = sorted(p for p in found if p.is_file() and _is_raster_name(p.name))
        deeper = None if recursive else _rasters_below(path)
        if not files and deeper:
            raise InputError(
                "folder_rasters_deeper", field="raster", path=str(path), count=deeper[0], pattern=deeper[1]
            )
        if not files:
            suffixes = ", ".join(RASTER_SUFFIXES[:4])
            raise InputError("folder_no_raster", field="raster", path=str(path), suffixes=suffixes)
        if deeper:
            log.warning(
                "%s: %d raster(s) in its subfolders are not mapped; read subfolders too (recursive), "
                "or give %s",
                path,
                *deeper,
            )
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
        return [s for e in entries for s in _expand(e, path.parent, seen_lists, stac, recursive)]
    if suffix in STAC_SUFFIXES:
        return stac_scenes(path, *stac)
    return [Scene(path.stem, str(path), str(path), date_from_name(path.name))]


def _rasters_below(folder: Path, limit: int = 10_000) -> tuple[int, str] | None:
    """How many rasters the subfolders of ``folder`` hold (counted up to ``limit`` files), and the
    glob that would map them: a folder is read one level deep, and a skipped raster must be said."""
    count, suffixes, seen = 0, Counter[str](), 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for p in sub.rglob("*"):
            seen += 1
            if seen > limit:
                break
            if _is_raster_name(p.name) and p.is_file():
                count += 1
                suffixes[p.suffix] += 1
    if not count:
        return None
    return count, str(folder / "**" / f"*{suffixes.most_common(1)[0][0]}")


def resolve_inputs(
    inputs: list[str],
    *,
    stac_bands: list[str] | None = None,
    engine: str = "water-index",
    cloud_mask: str = "auto",
    recursive: bool = False,
) -> list[Scene]:
    """Every scene the inputs name, in order, without duplicates, with unique ids.

    ``cloud_mask``: which masks STAC items bring along (see ``stac``). ``recursive``: a folder's
    subfolders are read too (their rasters sorted by path).
    """
    if not inputs:
        raise InputError("input_missing", field="raster")
    scenes: list[Scene] = []
    seen_lists: set[Path] = set()
    for text in inputs:
        scenes.extend(_expand(str(text), None, seen_lists, (stac_bands, engine, cloud_mask), recursive))
    return unique_scenes(scenes)


def unique_scenes(scenes: list[Scene]) -> list[Scene]:
    """``scenes`` in order, without duplicates (the same raster twice), ids made unique (``_2``...)."""
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
        out.append(dataclasses.replace(s, id=sid) if sid != s.id else s)
    return out


def _canonical(path: str) -> str:
    if path.startswith("/vsi"):
        return path
    try:
        return str(Path(path).resolve())
    except OSError:
        return path
