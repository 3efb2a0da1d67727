"""What a STAC search found, kept beside the output until it is written: a killed search run continues.

A catalogue changes while a run goes on (new items are published, old ones reprocessed), so
searching again on resume could map other scenes than the journal holds. The first run of a
search writes the items it found (JSON, unsigned) to ``OUT.gpkg.items.json``; a run that
continues an interrupted one (its journal is there, no ``restart``) maps those items again
instead of searching, when they were found by the same search. The journal's fingerprint
holds the scenes (item ids and their asset URLs), as for any other run.

The file is data, never code, 0600 and of this user, sealed with the journal's key
(``journal_seal``): a file planted or edited beside the output is not believed (the run
searches again, with a warning). It goes with the journal once the output is in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..inputs.scene import Scene
from ..serial import to_data
from ..specs import SegmentSpec
from .atomic import private_problem
from .journal_seal import Seal

log = logging.getLogger(__name__)
SUFFIX = ".items.json"
VERSION = 1


def items_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def _search_key(spec: SegmentSpec) -> str:
    """What decides which items a search finds (the signing does not)."""
    search = {k: v for k, v in to_data(spec.search).items() if k != "sign"}
    return json.dumps(
        {"search": search, "aoi": to_data(spec.grid.aoi), "aoi_crs": spec.grid.aoi_crs}, sort_keys=True
    )


def _read(path: Path, key: str) -> list[dict[str, Any]] | None:
    """The items kept by an earlier run of the same search, or None (with a warning when not believed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(
            "search_items_unreadable", field="restart", path=str(path), detail=str(exc)
        ) from None
    problem = private_problem(st)
    why = problem
    if problem is None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            seal = Seal(str(doc["nonce"]))
            items_text = json.dumps(doc["items"], sort_keys=True)
            if doc.get("version") != VERSION or not seal.check(
                bytes.fromhex(str(doc["mac"])), "found-items", doc["search"], items_text
            ):
                why = "it was not written by this user on this computer, or was changed"
            elif doc["search"] != key:
                return None  # another search: it is searched anew
            else:
                return [i for i in doc["items"] if isinstance(i, dict)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            why = f"it is damaged ({type(exc).__name__})"
    log.warning("%s: the items of an earlier search are not used (%s); searching again", path, why)
    return None


def _write(path: Path, key: str, items: list[dict[str, Any]]) -> None:
    seal = Seal(Seal.new_nonce())
    items_text = json.dumps(items, sort_keys=True)
    doc = {
        "version": VERSION,
        "nonce": seal.nonce,
        "search": key,
        "items": items,
        "mac": seal.mac("found-items", key, items_text).hex(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def found_scenes(spec: SegmentSpec, resuming: bool) -> list[Scene]:
    """The scenes of ``spec``'s search: the kept items when continuing a run, else a new search."""
    from ..inputs.grid import load_aoi
    from ..inputs.stac_search import search_items, search_scenes

    path = items_path(spec.output.path)
    key = _search_key(spec)
    items = _read(path, key) if resuming else None
    if items is not None:
        log.info("%s: continuing with the %d items the first search found", path.name, len(items))
    else:
        intersects = None
        if spec.search.bbox is None:  # the area of interest is the search's area
            import shapely.geometry

            area = load_aoi(spec.grid.aoi, "EPSG:4326", spec.grid.aoi_crs)
            intersects = shapely.geometry.mapping(area if isinstance(spec.grid.aoi, str) else area.envelope)
        items = search_items(spec.search, intersects)
        _write(path, key, items)
    stac_bands = list(spec.read.stac_bands) if spec.read.stac_bands else None
    return search_scenes(items, spec.search, stac_bands, spec.engine.name, spec.read.cloud_mask)


def remove_found(output: str | Path) -> None:
    """The kept items have served (the output is in place, or the run holds nothing to continue)."""
    try:
        items_path(output).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("%s: cannot delete the items of the search (%s)", items_path(output), exc)
