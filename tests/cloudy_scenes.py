"""Clouded synthetic pairs laid out as STAC catalogues publish them, with their exact truth.

Two dates over the same 6 km x 5 km of UTM 33N (near 45 N, 15 E):

- before: two lakes and a river, clear;
- after: 1 km^2 of flooded land beside the first lake (gained), the east half of the second
  lake dried (lost), and a 1 km^2 cloud over land and part of the first lake, with its
  shadow over land. The cloud is bright in every band (MNDWI > 0) and the shadow dark (MNDWI
  0.33): both look like water to an index that is not told about them.

Sentinel-2 L2A (``s2_item``): green and NIR at 10 m, SWIR16 and the scene classification
(SCL) at 20 m, one GeoTIFF each, keyed as Earth Search keys them. Landsat Collection 2
(``landsat_item``): green, nir08, swir16 and QA_PIXEL at 30 m. An L1C stack (``l1c_item``):
the thirteen L1C bands with top-of-atmosphere reflectances of land, water and cloud.
The truth is the shapes rasterized on each grid (pixel centres), so figures compare like
with like: ``truth(grid)`` gives gained, lost and clouded water in m^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import Point, box

ORIGIN = (500_000.0, 5_000_000.0)  # top-left, EPSG:32633
CRS = "EPSG:32633"
WIDTH_M, HEIGHT_M = 6000, 5000


def _shape(x0: float, y0: float, x1: float, y1: float) -> Any:
    """A box given in metres from the top-left corner (y down), in map coordinates."""
    ox, oy = ORIGIN
    return box(ox + x0, oy - y1, ox + x1, oy - y0)


def _map(geom_m: Any) -> Any:
    ox, oy = ORIGIN
    return affinity.affine_transform(geom_m, [1, 0, 0, -1, ox, oy])


LAKE1 = _map(affinity.scale(Point(2000, 2000).buffer(1.0, 64), 800, 600))
LAKE2 = _map(Point(4500, 3000).buffer(500, 64))
RIVER = _shape(0, 4200, 6000, 4400)
FLOOD = _shape(2900, 1500, 3900, 2500)  # 1 km^2 of land flooded on the second date
DRIED = _shape(4500, 2400, 5100, 3600)  # the east half of lake 2 dries
CLOUD = _shape(800, 1000, 1800, 2000)  # 1 km^2, over land and the north-west of lake 1
SHADOW = _shape(200, 2800, 1000, 3400)  # over land
BEFORE_WATER = shapely.union_all([LAKE1, LAKE2, RIVER])
AFTER_WATER = shapely.union_all([BEFORE_WATER, FLOOD]).difference(DRIED)

# Surface reflectance x 10000 (L2A, Landsat as reflectance x 10000 too).
SR = {
    "land": {"green": 800, "nir": 3000, "swir16": 2000},
    "water": {"green": 600, "nir": 200, "swir16": 100},
    "cloud": {"green": 6000, "nir": 6200, "swir16": 4500},
    "shadow": {"green": 300, "nir": 400, "swir16": 150},
}
SCL = {"land": 4, "water": 6, "cloud": 9, "shadow": 3}
_QA_BASE = (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
QA = {
    "land": _QA_BASE | 1 << 6,
    "water": _QA_BASE | 1 << 6 | 1 << 7,
    "cloud": _QA_BASE | 1 << 3 | 1 << 9,
    "shadow": _QA_BASE | 1 << 4 | 1 << 11,
}
# Top-of-atmosphere reflectance x 10000 of the 13 L1C bands B01..B8A..B12.
L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
L1C_COMMON = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
    "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
    "B12": "swir22",
}  # fmt: skip
TOA = {
    "land": (1200, 950, 900, 750, 1150, 2100, 2600, 2900, 3100, 1000, 20, 2100, 1250),
    "water": (1100, 800, 600, 400, 300, 250, 220, 200, 160, 90, 10, 100, 60),
    "cloud": (5200, 5100, 5000, 5000, 5100, 5200, 5300, 5400, 5300, 2200, 400, 3800, 2500),
}


@dataclass(frozen=True)
class Grid:
    res: float

    @property
    def width(self) -> int:
        return int(WIDTH_M / self.res)

    @property
    def height(self) -> int:
        return int(HEIGHT_M / self.res)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0, ORIGIN[0], 0, -self.res, ORIGIN[1])

    def burn(self, geom: Any) -> np.ndarray:
        if geom.is_empty:
            return np.zeros((self.height, self.width), bool)
        return rasterize([geom], out_shape=(self.height, self.width), transform=self.transform) > 0


def classes(grid: Grid, date: str, *, clouds: bool = True) -> np.ndarray:
    """Per pixel: 'land', 'water', 'cloud' or 'shadow' on ``date`` ('before' or 'after')."""
    out = np.full((grid.height, grid.width), "land", dtype=object)
    out[grid.burn(BEFORE_WATER if date == "before" else AFTER_WATER)] = "water"
    if date == "after" and clouds:
        out[grid.burn(SHADOW)] = "shadow"
        out[grid.burn(CLOUD)] = "cloud"
    return out


def truth(grid: Grid) -> dict[str, float]:
    """Gained, lost and clouded-water area (m^2) on ``grid``, where both dates saw the ground."""
    before = grid.burn(BEFORE_WATER)
    after = grid.burn(AFTER_WATER)
    unseen = grid.burn(SHADOW) | grid.burn(CLOUD)
    px = grid.res * grid.res
    return {
        "gained": float((after & ~before & ~unseen).sum() * px),
        "lost": float((before & ~after & ~unseen).sum() * px),
        "unknown": float((before & unseen).sum() * px),
        "clouded": float(unseen.sum() * px),
    }


def _write(path: Path, data: np.ndarray, grid: Grid, nodata: float | None = 0) -> None:
    profile = dict(
        driver="GTiff", width=grid.width, height=grid.height, count=1, dtype=data.dtype, crs=CRS,
        transform=grid.transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _paint(
    kinds: np.ndarray, table: dict[str, Any], dtype: str, rng: np.random.Generator, noise: float
) -> np.ndarray:
    values = np.zeros(kinds.shape, np.float64)
    for kind, value in table.items():
        values[kinds == kind] = value
    if noise:
        values += rng.normal(0, noise, kinds.shape)
    return np.clip(np.round(values), 1, np.iinfo(dtype).max).astype(dtype)


def _lonlat_geometry() -> dict[str, Any]:
    from pyproj import Transformer

    t = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    frame = _shape(0, 0, WIDTH_M, HEIGHT_M)
    geom = shapely.transform(
        shapely.segmentize(frame, 500), lambda x, y: t.transform(x, y), interleaved=False
    )
    return shapely.geometry.mapping(geom)


def _item(item_id: str, date: str, assets: dict[str, Any], collection: str, cloud: float) -> dict[str, Any]:
    geometry = _lonlat_geometry()
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": list(shapely.bounds(shapely.geometry.shape(geometry))),
        "properties": {"datetime": date, "eo:cloud_cover": cloud, "proj:epsg": 32633},
        "links": [],
        "assets": assets,
    }


def _asset(
    href: str, grid: Grid, common: str | None, name: str, dtype: str, nodata: float | None = 0
) -> dict:
    asset: dict[str, Any] = {
        "href": href,
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
        "proj:shape": [grid.height, grid.width],
        "proj:transform": list(grid.transform)[:6],
        "raster:bands": [{"data_type": dtype, "nodata": nodata}],
    }
    if common is not None:
        asset["eo:bands"] = [{"name": name, "common_name": common}]
    return asset


def s2_item(folder: Path, href: str, date: str, when: str, *, seed: int = 0, clouds: bool = True) -> dict:
    """A Sentinel-2 L2A item as Earth Search publishes it: B03/B08 at 10 m, B11 and SCL at 20 m.

    ``href``: the base the asset file names are joined to (a folder, or the API's /files/ URL).
    """
    rng = np.random.default_rng(seed)
    item_id = f"S2B_33TWL_{when.replace('-', '')}_0_L2A"
    assets = {}
    for key, common, res in (("green", "green", 10), ("nir", "nir", 10), ("swir16", "swir16", 20)):
        grid = Grid(res)
        table = {k: v[common] for k, v in SR.items()}
        name = f"{item_id}_{key}.tif"
        _write(folder / name, _paint(classes(grid, date, clouds=clouds), table, "uint16", rng, 30), grid)
        code = {"green": "B03", "nir": "B08", "swir16": "B11"}[key]
        assets[key] = _asset(f"{href}/{name}", grid, common, code, "uint16")
    grid = Grid(20)
    scl = _paint(classes(grid, date, clouds=clouds), SCL, "uint8", rng, 0)
    _write(folder / f"{item_id}_scl.tif", scl, grid)
    assets["scl"] = {
        **_asset(f"{href}/{item_id}_scl.tif", grid, None, "SCL", "uint8"),
        "title": "Scene classification map (SCL)",
    }
    assets["thumbnail"] = {"href": f"{href}/thumb.jpg", "type": "image/jpeg", "roles": ["thumbnail"]}
    cloud = 100.0 * truth(Grid(20))["clouded"] / (WIDTH_M * HEIGHT_M) if date == "after" and clouds else 0.0
    return _item(item_id, f"{when}T10:20:31Z", assets, "sentinel-2-l2a", round(cloud, 2))


def landsat_item(folder: Path, href: str, date: str, when: str, *, seed: int = 0) -> dict:
    """A Landsat Collection 2 item as Earth Search / Planetary Computer key it: 30 m bands and qa_pixel."""
    rng = np.random.default_rng(seed)
    item_id = f"LC09_L2SP_189028_{when.replace('-', '')}_02_T1"
    grid = Grid(30)
    kinds = classes(grid, date)
    assets = {}
    for key, common in (("green", "green"), ("nir08", "nir"), ("swir16", "swir16")):
        table = {k: v[common] for k, v in SR.items()}
        name = f"{item_id}_{key}.tif"
        _write(folder / name, _paint(kinds, table, "uint16", rng, 30), grid)
        assets[key] = _asset(
            f"{href}/{name}", grid, "nir08" if key == "nir08" else common, key.upper(), "uint16"
        )
    _write(folder / f"{item_id}_qa_pixel.tif", _paint(kinds, QA, "uint16", rng, 0), grid, nodata=1)
    assets["qa_pixel"] = {
        **_asset(f"{href}/{item_id}_qa_pixel.tif", grid, None, "QA_PIXEL", "uint16", 1),
        "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
        "title": "Pixel Quality Assessment Band",
    }
    cloud = 100.0 * truth(grid)["clouded"] / (WIDTH_M * HEIGHT_M) if date == "after" else 0.0
    return _item(item_id, f"{when}T09:50:00Z", assets, "landsat-c2-l2", round(cloud, 2))


def l1c_item(folder: Path, href: str, date: str, when: str, *, seed: int = 0, res: float = 20) -> dict:
    """A Sentinel-2 L1C item: the 13 bands at one resolution, top-of-atmosphere reflectance x 10000."""
    rng = np.random.default_rng(seed)
    item_id = f"S2B_33TWL_{when.replace('-', '')}_0_L1C"
    grid = Grid(res)
    kinds = classes(grid, date)
    kinds[kinds == "shadow"] = "land"  # s2cloudless finds clouds, not their shadows
    assets = {}
    for i, code in enumerate(L1C_BANDS):
        table = {k: v[i] for k, v in TOA.items()}
        name = f"{item_id}_{code}.tif"
        _write(folder / name, _paint(kinds, table, "uint16", rng, 20), grid)
        assets[L1C_COMMON[code] if code not in ("B05", "B06", "B07") else code.lower()] = _asset(
            f"{href}/{name}", grid, L1C_COMMON[code], code, "uint16"
        )
    return _item(item_id, f"{when}T10:20:31Z", assets, "sentinel-2-l1c", 0.0)
