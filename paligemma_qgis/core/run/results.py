"""A scene's result: what the output and the journal keep of a finished or failed scene.

``to_bytes``/``from_bytes`` are the journal's record of a scene: data, never code. A record is
``MAGIC``, the length of a JSON header, the header (plain values: counts, texts, CRS WKT, chip
records), then the geometries as WKB, their lengths in the header. Nothing in it is unpickled
or evaluated, so a planted or damaged journal can at worst hold wrong numbers (which the
journal's keyed checksums catch, see ``journal``), and a journal outlives the objects that made
it. Paths and error texts go in redacted: the real URL of a scene lives only in memory.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import PaliGemmaQgisError
from ..inputs.scenes import Scene
from ..redact import redact

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from .plan import ScenePlan

MAGIC = b"PGQ-scene-1\n"
_LENGTH = struct.Struct("<Q")
_COUNTS = ("chips", "skipped", "from_journal", "read_errors")
_FLOATS = ("seconds", "chip_seconds", "water_area_m2", "observed_area_m2")


class RecordError(PaliGemmaQgisError):
    """A journal record that does not decode (written by another version, or damaged)."""


@dataclass
class SceneResult:
    """A finished (or failed) scene: what the output and the journal keep of it."""

    scene: Scene
    status: str  # "done" or "failed"
    error: str | None = None
    date: str | None = None
    crs_wkt: str | None = None
    transform: tuple[float, ...] | None = None
    water: Any = None  # GeoDataFrame in the scene's CRS
    observed: Any = None  # shapely geometry in the scene's CRS
    footprint: Any = None  # the raster's extent in its CRS
    records: list[dict[str, Any]] = field(default_factory=list)
    chips: int = 0
    skipped: int = 0
    from_journal: int = 0
    read_errors: int = 0
    seconds: float = 0.0
    chip_seconds: float = 0.0
    water_area_m2: float = 0.0
    observed_area_m2: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)
    # The engine that answered (model.segmenter.EngineInfo as JSON), so a run resumed from the
    # journal alone writes the same facts as one that ran the model.
    engine_info: dict[str, Any] | None = None
    cloud_pct: float | None = None  # share of the scene's data its cloud mask left out (None: no mask)

    def to_bytes(self) -> bytes:
        """The journal's record: a JSON header of plain values, then WKB (see the module docstring)."""
        import shapely

        blobs: list[bytes] = []

        def wkb(geom: BaseGeometry | None) -> int | None:
            if geom is None:
                return None
            blobs.append(shapely.to_wkb(geom))
            return len(blobs[-1])

        header: dict[str, Any] = {
            "scene": {
                "id": self.scene.id,
                "path": redact(self.scene.path),
                "source": redact(self.scene.source),
                "date": self.scene.date,
            },
            "status": self.status,
            "error": redact(self.error) if self.error else self.error,
            "date": self.date,
            "crs_wkt": self.crs_wkt,
            "transform": None if self.transform is None else [float(v) for v in self.transform],
            "engine": json.loads(json.dumps(self.engine, default=str)),
            "engine_info": self.engine_info,
            "cloud_pct": None if self.cloud_pct is None else float(self.cloud_pct),
            "records": [_record_values(r) for r in self.records],
            **{k: int(getattr(self, k)) for k in _COUNTS},
            **{k: float(getattr(self, k)) for k in _FLOATS},
            "observed": wkb(self.observed),
            "footprint": wkb(self.footprint),
            "water": None,
        }
        if self.water is not None:
            header["water"] = {
                "columns": {c: self.water[c].tolist() for c in self.water.columns if c != "geometry"},
                "wkb": [wkb(g) for g in self.water.geometry.values],
            }
        text = json.dumps(header, separators=(",", ":"), default=_plain).encode("utf-8")
        return b"".join([MAGIC, _LENGTH.pack(len(text)), text, *blobs])

    @classmethod
    def from_bytes(cls, blob: bytes) -> SceneResult:
        """Decode a record of ``to_bytes``; RecordError (one line) for anything else."""
        try:
            return cls._decode(bytes(blob))
        except RecordError:
            raise
        except Exception as exc:  # any malformed value: the record is not one of ours
            raise RecordError("record_undecodable", detail=f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def _decode(cls, blob: bytes) -> SceneResult:
        import geopandas as gpd
        import shapely
        from rasterio.windows import Window

        if not blob.startswith(MAGIC):
            raise RecordError("record_foreign")
        start = len(MAGIC) + _LENGTH.size
        (size,) = _LENGTH.unpack_from(blob, len(MAGIC))
        d = json.loads(blob[start : start + size].decode("utf-8"))
        offset = start + size

        def take(length: object) -> bytes:
            nonlocal offset
            if not isinstance(length, int) or length < 0 or offset + length > len(blob):
                raise RecordError("record_short")
            offset += length
            return blob[offset - length : offset]

        d["scene"] = Scene(**d["scene"])
        for key in ("observed", "footprint"):
            d[key] = None if d[key] is None else shapely.from_wkb(take(d[key]))
        if d["water"] is not None:
            w = d["water"]
            geoms = shapely.from_wkb([take(n) for n in w["wkb"]])
            d["water"] = gpd.GeoDataFrame(w["columns"], geometry=gpd.GeoSeries(geoms, crs=d["crs_wkt"]))
            d["water"].attrs["geometry_type"] = "Polygon"
        if offset != len(blob):
            raise RecordError("record_trailing")
        if d["transform"] is not None:
            d["transform"] = tuple(d["transform"])
        d["records"] = [{**r, "window": Window(*r["window"])} for r in d["records"]]
        return cls(**d)


def _plain(value: object) -> Any:
    """numpy scalars as Python numbers; anything else is not a record value."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a journal value")


def _record_values(record: dict[str, Any]) -> dict[str, Any]:
    w = record["window"]
    return {
        **record,
        "window": [int(w.col_off), int(w.row_off), int(w.width), int(w.height)],
    }


def failed_result(
    scene: Scene, exc: BaseException, seconds: float = 0.0, plan: ScenePlan | None = None
) -> SceneResult:
    text = str(exc) if isinstance(exc, PaliGemmaQgisError) else f"{type(exc).__name__}: {exc}"
    return SceneResult(
        scene=scene,
        status="failed",
        error=redact(text),  # shown, journaled and written: never a credential of the URL
        date=plan.date if plan else scene.date,
        crs_wkt=plan.crs_wkt if plan else None,
        footprint=plan.footprint if plan else None,
        seconds=seconds,
    )
