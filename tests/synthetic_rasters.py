"""Synthetic georeferenced scenes with known water, for tests anywhere in the project.

``make_scene(path, ...)`` writes a tiled, compressed GeoTIFF (R, G, B, NIR and optionally
SWIR) with two lakes, a pond and a sinuous river whose exact shapes are known, in UTM,
EPSG:4326 or EPSG:3857, as uint8 or uint16, optionally with a rotated valid footprint whose
outside is nodata (declared value, alpha band or internal mask). Under an alpha band or an
internal mask the hidden collar is filled with *water-like* values, so a pipeline that
ignores the mask maps water there.

Spectra (uint8 DN): land R90 G110 B70 NIR180 SWIR150; water R30 G60 B80 NIR15 SWIR10,
so NDWI is about 0.6 on water and -0.24 on land. A dark "asphalt" patch (all bands ~25)
is dark in RGB but not water by NDWI. ``fields_px`` paints harvested fields of bright bare
soil (NDWI +0.02, bright in NIR and SWIR), and ``water_spectrum`` may make the water shallow
(``SHALLOW_WATER``: NDWI 0.2), the third histogram mode real NAIP tiles have (issue 23).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box

LAND = {"red": 90, "green": 110, "blue": 70, "nir": 180, "swir": 150}
WATER = {"red": 30, "green": 60, "blue": 80, "nir": 15, "swir": 10}
ASPHALT = {"red": 25, "green": 25, "blue": 25, "nir": 40, "swir": 45}
FIELDS = {"red": 170, "green": 175, "blue": 150, "nir": 168, "swir": 200}
SHALLOW_WATER = {"red": 60, "green": 90, "blue": 85, "nir": 60, "swir": 30}

# Origin (top-left) and pixel size per CRS: all near 45 N, 15 E.
GRIDS = {
    "EPSG:32633": ((500_000.0, 5_000_000.0), (10.0, 10.0)),
    "EPSG:4326": ((15.0, 45.05), (0.0001, 0.0001)),
    "EPSG:3857": ((1_669_792.0, 5_621_521.0), (10.0, 10.0)),
}


@dataclass
class SyntheticScene:
    """A written scene and its truth. Geometries are in raster CRS unless named ``*_px``."""

    path: Path
    crs: str
    transform: Affine
    width: int
    height: int
    dtype: str
    band_names: tuple[str, ...]
    nodata: float | None
    mask_kind: str
    water_px: list = field(default_factory=list)  # one pixel-space polygon per water body
    footprint_px: Polygon | None = None  # valid area in pixel space (None: all valid)

    def to_crs_geom(self, geom_px):
        t = self.transform
        return affinity.affine_transform(geom_px, [t.a, t.b, t.d, t.e, t.c, t.f])

    @property
    def water(self) -> list:
        """Water bodies in raster CRS (clipped to the valid footprint)."""
        return [self.to_crs_geom(g) for g in self.water_px]

    @property
    def footprint(self):
        return None if self.footprint_px is None else self.to_crs_geom(self.footprint_px)

    def water_mask(self) -> np.ndarray:
        """Truth water at pixel centres, (height, width) bool."""
        if not self.water_px:
            return np.zeros((self.height, self.width), bool)
        return rasterize(self.water_px, out_shape=(self.height, self.width), dtype="uint8") > 0

    def valid_mask(self) -> np.ndarray:
        if self.footprint_px is None:
            return np.ones((self.height, self.width), bool)
        return rasterize([self.footprint_px], out_shape=(self.height, self.width), dtype="uint8") > 0

    def band(self, name: str) -> int:
        """1-based band number of ``name`` (red, green, blue, nir, swir)."""
        return self.band_names.index(name) + 1


def equal_area_m2(geom, crs) -> float:
    """Area in m2 in a Lambert azimuthal equal-area projection centred on the geometry."""
    src = CRS.from_user_input(crs)
    to_ll = Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(geom.centroid.x, geom.centroid.y)
    laea = CRS.from_proj4(f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m +no_defs")
    t = Transformer.from_crs(src, laea, always_xy=True)
    return shapely.transform(geom, lambda x, y: t.transform(x, y), interleaved=False).area


def default_water_px(width: int = 600, height: int = 500) -> list:
    """Two lakes (one across chip seams), a pond and a sinuous river, in pixel space."""
    sx, sy = width / 600, height / 500
    lake1 = affinity.scale(Point(200 * sx, 200 * sy).buffer(1.0, 64), 80 * sx, 60 * sy)
    lake2 = Point(450 * sx, 300 * sy).buffer(50 * min(sx, sy), 64)
    pond = Point(520 * sx, 90 * sy).buffer(15 * min(sx, sy), 32)
    xs = np.linspace(-10, width + 10, 200)
    ys = (430 + 20 * np.sin(xs / width * 3 * math.pi)) * sy
    river = LineString(np.column_stack([xs, ys])).buffer(9 * min(sx, sy), 8)
    return [lake1, lake2, pond, river]


def make_scene(
    path: str | Path,
    *,
    crs: str = "EPSG:32633",
    width: int = 600,
    height: int = 500,
    dtype: str = "uint8",
    swir: bool = False,
    collar: bool = False,
    mask: str = "nodata",
    nodata: float | None = 0,
    describe: bool = False,
    noise: float = 3.0,
    asphalt: bool = True,
    water_px: list | None = None,
    seed: int = 0,
    blocksize: int = 256,
    tiled: bool = True,
    grid: tuple | None = None,
    fields_px: list | None = None,
    water_spectrum: dict | None = None,
) -> SyntheticScene:
    """Write a synthetic scene to ``path`` and return it with its truth.

    ``mask``: how the collar outside the rotated footprint (``collar=True``) is marked:
    "nodata" (declared value in every band), "alpha" (an alpha band) or "internal" (a GDAL
    internal mask). ``describe`` writes band descriptions ("red", ..., "swir"). ``grid``:
    ((x0, y0), (rx, ry)), the top-left corner and pixel size, instead of the CRS's default.
    ``tiled=False``: stored in strips (``blocksize`` ignored).
    """
    path = Path(path)
    (x0, y0), (rx, ry) = grid or GRIDS[crs]
    transform = Affine(rx, 0.0, x0, 0.0, -ry, y0)
    names = ("red", "green", "blue", "nir") + (("swir",) if swir else ())
    rng = np.random.default_rng(seed)

    water_px = default_water_px(width, height) if water_px is None else list(water_px)
    frame = box(0, 0, width, height)
    water_px = [g.intersection(frame) for g in water_px]
    footprint = None
    if collar:
        hw, hh = 0.415 * width, 0.38 * height
        rect = box(width / 2 - hw, height / 2 - hh, width / 2 + hw, height / 2 + hh)
        footprint = affinity.rotate(rect, 10, origin=(width / 2, height / 2))
        water_px = [g.intersection(footprint) for g in water_px]
        water_px = [g for g in water_px if not g.is_empty]
    shape = (height, width)
    water = rasterize(water_px, out_shape=shape, dtype="uint8") > 0 if water_px else np.zeros(shape, bool)
    dark = np.zeros(shape, bool)
    if asphalt:
        dark = rasterize([box(width * 0.05, height * 0.05, width * 0.15, height * 0.12)], out_shape=shape) > 0
        dark &= ~water
    fields = np.zeros(shape, bool)
    if fields_px:
        fields = (rasterize(fields_px, out_shape=shape) > 0) & ~water & ~dark
    water_values = water_spectrum or WATER
    valid = np.ones(shape, bool)
    if footprint is not None:
        valid = rasterize([footprint], out_shape=shape, dtype="uint8") > 0

    scale, offset = (40.0, 200.0) if dtype == "uint16" else (1.0, 0.0)
    data = np.empty((len(names), height, width), dtype)
    for i, name in enumerate(names):
        land = np.where(fields, FIELDS[name], LAND[name])
        band = np.where(water, water_values[name], np.where(dark, ASPHALT[name], land)).astype(np.float64)
        band += rng.normal(0, noise, shape)
        band = band * scale + offset
        if footprint is not None and mask != "nodata":
            band[~valid] = WATER[name] * scale + offset  # adversarial: water-like under the mask
        lo = 1 if nodata == 0 else 0  # keep data off the nodata value
        band = np.clip(np.round(band), lo, np.iinfo(dtype).max - 1)
        if footprint is not None and mask == "nodata":
            band[~valid] = nodata
        data[i] = band.astype(dtype)

    count = len(names) + (1 if mask == "alpha" and footprint is not None else 0)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        compress="deflate",
        photometric="minisblack",  # GDAL would call a 4th uint8 band alpha otherwise
    )
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    declared = nodata if (mask == "nodata" or footprint is None) else None
    if declared is not None:
        profile["nodata"] = declared
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data, indexes=list(range(1, len(names) + 1)))
        if describe:
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
        if footprint is not None and mask == "alpha":
            alpha = np.where(valid, np.iinfo(dtype).max, 0).astype(dtype)
            dst.write(alpha, count)
            from rasterio.enums import ColorInterp

            dst.colorinterp = (
                [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
                + [ColorInterp.undefined] * (len(names) - 3)
                + [ColorInterp.alpha]
            )
        elif footprint is not None and mask == "internal":
            dst.write_mask(np.where(valid, 255, 0).astype("uint8"))
    return SyntheticScene(
        path=path,
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        dtype=dtype,
        band_names=names,
        nodata=declared,
        mask_kind=mask if footprint is not None else "none",
        water_px=water_px,
        footprint_px=footprint,
    )


def iou(a, b) -> float:
    """Intersection over union of two (multi)polygons."""
    union = shapely.union(a, b).area
    return 1.0 if union == 0 else shapely.intersection(a, b).area / union
