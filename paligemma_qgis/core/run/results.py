"""A scene's result: what the output and the journal keep of a finished or failed scene.

``to_bytes``/``from_bytes`` are the journal's record of a scene: plain values and WKB, so a
journal outlives the objects that made it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..inputs.scenes import Scene

if TYPE_CHECKING:
    from .plan import ScenePlan


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

    def to_bytes(self) -> bytes:
        """Plain values and WKB only (no library objects): a journal outlives nothing but stays readable."""
        import shapely

        d = dict(vars(self))
        d["scene"] = vars(self.scene)
        if self.water is not None:
            d["water"] = {
                "wkb": list(shapely.to_wkb(self.water.geometry.values)),
                "columns": {c: self.water[c].tolist() for c in self.water.columns if c != "geometry"},
                "crs": self.crs_wkt,
            }
        for key in ("observed", "footprint"):
            d[key] = None if getattr(self, key) is None else shapely.to_wkb(getattr(self, key))
        d["records"] = [
            {
                **r,
                "window": (
                    int(r["window"].col_off),
                    int(r["window"].row_off),
                    int(r["window"].width),
                    int(r["window"].height),
                ),
            }
            for r in self.records
        ]
        return pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, blob: bytes) -> SceneResult:
        import geopandas as gpd
        import shapely
        from rasterio.windows import Window

        d = pickle.loads(blob)  # noqa: S301 - our own journal, written by this process's code
        d["scene"] = Scene(**d["scene"])
        if d["water"] is not None:
            w = d["water"]
            d["water"] = gpd.GeoDataFrame(
                w["columns"], geometry=gpd.GeoSeries(shapely.from_wkb(w["wkb"]), crs=w["crs"])
            )
            d["water"].attrs["geometry_type"] = "Polygon"
        for key in ("observed", "footprint"):
            d[key] = None if d[key] is None else shapely.from_wkb(d[key])
        d["records"] = [{**r, "window": Window(*r["window"])} for r in d["records"]]
        return cls(**d)


def failed_result(
    scene: Scene, exc: BaseException, seconds: float = 0.0, plan: ScenePlan | None = None
) -> SceneResult:
    from ..errors import PaliGemmaQgisError

    text = str(exc) if isinstance(exc, PaliGemmaQgisError) else f"{type(exc).__name__}: {exc}"
    return SceneResult(
        scene=scene,
        status="failed",
        error=text,
        date=plan.date if plan else scene.date,
        crs_wkt=plan.crs_wkt if plan else None,
        footprint=plan.footprint if plan else None,
        seconds=seconds,
    )
