"""Local STAC Items and ItemCollections as scenes: assets chosen by band common name, stacked in a VRT.

STAC catalogues (Sentinel-2 and Landsat on Earth Search, Planetary Computer...) publish one
file per band, often at different resolutions (Sentinel-2 B11 at 20 m beside B3 at 10 m).
For each item the bands asked for (``green,nir,swir16`` ...) are found by their common name
(``eo:bands`` of STAC 1.0, ``bands``/``eo:common_name`` of 1.1, or an asset keyed by the
name), and stacked into one VRT on the finest band's grid (coarser bands by nearest
neighbour, so values stay exact). Each VRT band carries its common name as description, so
band roles are known without a preset. The acquisition date is the item's ``datetime``
(or ``start_datetime``).

The VRT is written by hand (a few XML elements) because rasterio has no BuildVRT and GDAL's
Python bindings are not in a pip-installed worker; GDAL opens the XML text itself as a
dataset, so nothing is written to disk and a Ray worker elsewhere opens the same text.
Grid facts come from the projection extension (``proj:shape``, ``proj:transform``) when the
item has them; otherwise the asset is opened once to read them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from ..errors import InputError
from .scenes import Scene, _virtual, normalise_date

DEFAULT_BANDS = {"water-index": ["green", "nir", "swir16"], "paligemma": ["red", "green", "blue"]}
# A band asked for by one name may be published under another.
_ALIASES = {"nir": ("nir", "nir08"), "swir16": ("swir16", "swir1"), "swir22": ("swir22", "swir2")}
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def _load(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read as JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a STAC Item or ItemCollection (a JSON object is expected)")
    return doc


def _items(path: Path, doc: dict) -> list[dict]:
    if doc.get("type") == "Feature" and "assets" in doc:
        return [doc]
    if doc.get("type") == "FeatureCollection":
        items = [f for f in doc.get("features", []) if isinstance(f, dict) and "assets" in f]
        if not items:
            raise InputError(f"{path}: the collection holds no STAC item with assets")
        return items
    raise InputError(f"{path}: not a STAC Item or ItemCollection (no 'assets'; a raster list is a .txt file)")


def _band_names(asset: dict) -> list[str]:
    """Common names of an asset's bands, in band order ('' where not given)."""
    bands = asset.get("eo:bands") or asset.get("bands") or []
    return [
        str(b.get("common_name") or b.get("eo:common_name") or "").lower()
        for b in bands
        if isinstance(b, dict)
    ]


def _find(item: dict, name: str) -> tuple[str, dict, int] | None:
    """(asset key, asset, 1-based band) holding common name ``name``; single-band assets first."""
    names = _ALIASES.get(name, (name,))
    found = []
    for key, asset in item["assets"].items():
        if not isinstance(asset, dict) or "href" not in asset:
            continue
        common = _band_names(asset)
        for n in names:
            if n in common:
                found.append((len(common), key, asset, common.index(n) + 1))
        if not common and key.lower() in names:
            found.append((1, key, asset, 1))
    if not found:
        return None
    found.sort(key=lambda f: f[0])
    _, key, asset, band = found[0]
    return key, asset, band


def _href(base: Path, href: str) -> str:
    remote = _virtual(href)
    if remote is not None:
        return remote
    if href.startswith("file://"):
        href = href[len("file://") :]
    p = Path(href)
    return str(p if p.is_absolute() else (base / p).resolve())


def _grid(item: dict, asset: dict, band: int, gdal_path: str, source: str) -> dict[str, Any]:
    """Size, transform, CRS, dtype and nodata of one asset band: from STAC fields, else from the file."""
    props = {**item.get("properties", {}), **asset}
    shape, transform = props.get("proj:shape"), props.get("proj:transform")
    crs = props.get("proj:code") or (f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None)
    rb = (asset.get("raster:bands") or asset.get("bands") or [{}])[band - 1] or {}
    dtype = rb.get("data_type")
    nodata = rb.get("nodata", asset.get("nodata"))
    if shape and transform and crs and dtype:
        from rasterio.crs import CRS

        return {
            "height": int(shape[0]),
            "width": int(shape[1]),
            "transform": [float(v) for v in transform[:6]],
            "crs": CRS.from_user_input(crs).to_wkt(),
            "dtype": str(dtype),
            "nodata": nodata,
        }
    import rasterio

    try:
        with rasterio.open(gdal_path) as ds:
            t = ds.transform
            return {
                "height": ds.height,
                "width": ds.width,
                "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                "crs": ds.crs.to_wkt() if ds.crs else None,
                "dtype": ds.dtypes[band - 1],
                "nodata": ds.nodata if nodata is None else nodata,
            }
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{source}: cannot open asset {gdal_path} ({exc})") from None
    except IndexError:
        raise InputError(f"{source}: asset {gdal_path} has no band {band}") from None


def _vrt(bands: list[tuple[str, str, int, dict]], source: str) -> str:
    """VRT XML stacking (common name, path, band, grid) on the finest grid."""
    crs = {g["crs"] for *_, g in bands}
    if len(crs) != 1 or None in crs:
        raise InputError(f"{source}: the chosen band assets are not in one CRS")
    for *_, g in bands:
        a, b, _, d, e, _ = g["transform"]
        if b != 0 or d != 0 or a <= 0 or e >= 0:
            raise InputError(f"{source}: asset grids must be north-up and unrotated")
    finest = min((g for *_, g in bands), key=lambda g: g["transform"][0])
    res_x, _, left, _, res_y, top = finest["transform"]
    width, height = finest["width"], finest["height"]
    import numpy as np

    dtype = np.result_type(*[np.dtype(g["dtype"]) for *_, g in bands]).name
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    srs = ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2")
    srs.text = crs.pop()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in (left, res_x, 0.0, top, 0.0, res_y))
    for i, (name, path, band, g) in enumerate(bands, start=1):
        vb = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES.get(dtype, "Float32"), band=str(i))
        ET.SubElement(vb, "Description").text = name
        if g["nodata"] is not None and not (isinstance(g["nodata"], float) and math.isnan(g["nodata"])):
            ET.SubElement(vb, "NoDataValue").text = repr(g["nodata"])
        src = ET.SubElement(
            vb, "ComplexSource" if g["nodata"] is not None else "SimpleSource", resampling="nearest"
        )
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = path
        ET.SubElement(src, "SourceBand").text = str(band)
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(g["width"]), ySize=str(g["height"]))
        sa, _, sl, _, se, st = g["transform"]
        ET.SubElement(
            src,
            "DstRect",
            xOff=repr((sl - left) / res_x),
            yOff=repr((st - top) / res_y),
            xSize=repr(g["width"] * sa / res_x),
            ySize=repr(g["height"] * se / res_y),
        )
        if g["nodata"] is not None:
            ET.SubElement(src, "NODATA").text = repr(g["nodata"])
    return ET.tostring(root, encoding="unicode")


def _missing(found: list[str], wanted: list[str], *, explicit: bool, engine: str) -> list[str]:
    """Bands the run cannot do without: all asked for explicitly; else what the engine needs."""
    if explicit or engine != "water-index":
        return [w for w in wanted if w not in found]
    if "green" not in found:
        return ["green"]
    return [] if {"nir", "swir16"} & set(found) else ["nir", "swir16"]


def stac_scenes(path: Path, bands: list[str] | None = None, engine: str = "water-index") -> list[Scene]:
    """One scene per item of a STAC Item / ItemCollection file, its bands stacked as a VRT."""
    wanted = [b.lower() for b in (bands or DEFAULT_BANDS.get(engine, DEFAULT_BANDS["water-index"]))]
    doc = _load(path)
    scenes = []
    for n, item in enumerate(_items(path, doc), start=1):
        item_id = str(item.get("id") or f"item{n}")
        source = f"{path}#{item_id}"
        chosen = []
        for name in wanted:
            hit = _find(item, name)
            if hit is None:
                continue
            key, asset, band = hit
            gdal_path = _href(path.parent, str(asset["href"]))
            chosen.append((name, gdal_path, band, _grid(item, asset, band, gdal_path, source)))
        missing = _missing([name for name, *_ in chosen], wanted, explicit=bands is not None, engine=engine)
        if missing:
            available = sorted(
                {n for a in item["assets"].values() if isinstance(a, dict) for n in _band_names(a)}
            )
            raise InputError(
                f"{source}: no asset holds the band {' or '.join(missing)}"
                + (f" (its bands: {', '.join(a for a in available if a)})" if available else "")
                + "; choose others with --stac-bands"
            )
        props = item.get("properties", {})
        date = normalise_date(props.get("datetime") or props.get("start_datetime"))
        scenes.append(Scene(item_id, _vrt(chosen, source), source, date))
    return scenes
