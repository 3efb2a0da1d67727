"""STAC Items, ItemCollections and Catalogs as scenes, read with pystac: bands by common name, in a VRT.

STAC catalogues (Sentinel-2 and Landsat on Earth Search, Planetary Computer...) publish one
file per band, often at different resolutions (Sentinel-2 B11 at 20 m beside B3 at 10 m).
For each item the bands asked for (``green,nir,swir16`` ...) are found by their common name
(the eo extension's ``eo:bands``, STAC 1.1's ``bands`` with ``eo:common_name``, or an asset
keyed by the name), and stacked into one VRT on the finest band's grid (coarser bands by
nearest neighbour, so values stay exact). Each VRT band carries its common name as
description, so band roles are known without a preset. The acquisition date is the item's
``datetime`` (or ``start_datetime``). A Catalog or Collection file is walked for its items.

pystac parses the documents (and migrates older STAC versions); the eo, raster and
projection extensions are read through pystac's extension classes, also where an item uses
their fields without declaring them (many local files do). Grid facts come from the
projection extension (``proj:shape``, ``proj:transform``, ``proj:code``) and the raster
extension (data type, nodata) when the item has them; otherwise the asset is opened once.

Cloud masks travel with the scene (``Scene.masks``): the item's scene classification (SCL,
Sentinel-2 L2A) or pixel QA (``qa_pixel``, Landsat Collection 2), found by the asset keys and
roles Earth Search and Planetary Computer use, as a one-band VRT on the scene's grid; and
with ``cloud_mask="s2cloudless"`` the ten L1C bands s2cloudless reads.

The VRT is written by hand (a few XML elements) because rasterio has no BuildVRT and GDAL's
Python bindings are not in a pip-installed worker; GDAL opens the XML text itself as a
dataset, so nothing is written to disk and a Ray worker elsewhere opens the same text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from ..errors import InputError
from .scene import Scene, _virtual, normalise_date

if TYPE_CHECKING:
    import pystac

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
# The bands s2cloudless reads, in its order: (band code, common names an L1C catalogue gives it).
S2CLOUDLESS_BANDS = (
    ("B01", ("coastal",)),
    ("B02", ("blue",)),
    ("B04", ("red",)),
    ("B05", ("rededge", "rededge1", "rededge071")),
    ("B08", ("nir",)),
    ("B8A", ("nir08", "rededge4", "nir narrow")),
    ("B09", ("nir09",)),
    ("B10", ("cirrus",)),
    ("B11", ("swir16",)),
    ("B12", ("swir22",)),
)


@dataclass(frozen=True)
class _Band:
    """One band chosen from an item: its name in the VRT, GDAL path, band number and grid."""

    name: str
    path: str
    band: int
    grid: dict[str, Any]


# ----------------------------------------------------------------------------- documents
def _load(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError("stac_not_json", path=str(path), detail=str(exc)) from None
    if not isinstance(doc, dict):
        raise InputError("stac_not_stac", path=str(path))
    return doc


def _item(doc: dict, href: str | None, where: str) -> pystac.Item:
    """A pystac Item from a feature; the fields local files often leave out get STAC's defaults."""
    import pystac

    doc = {"stac_version": "1.0.0", "geometry": None, "links": [], **doc}
    props = doc.get("properties")
    if not isinstance(props, dict) or not (props.get("datetime") or props.get("start_datetime")):
        doc["properties"] = {"datetime": None, **(props if isinstance(props, dict) else {})}
        doc["properties"].setdefault("start_datetime", None)
    try:
        item = pystac.Item.from_dict(doc, href=href, preserve_dict=True)
    except (pystac.STACError, KeyError, TypeError, ValueError) as exc:
        raise InputError("stac_bad_item", path=where, detail=f"{type(exc).__name__}: {exc}") from None
    _declare_extensions(item)
    return item


def read_items(path: Path) -> list[pystac.Item]:
    """The items of a STAC Item, ItemCollection, Catalog or Collection file that have assets."""
    doc = _load(path)
    kind = doc.get("type")
    href = str(path.resolve())
    if kind == "Feature" and "assets" in doc:
        return [_item(doc, href, str(path))]
    if kind == "FeatureCollection":
        features = [f for f in doc.get("features", []) if isinstance(f, dict) and "assets" in f]
        if not features:
            raise InputError("stac_no_items", path=str(path))
        return [_item(f, href, f"{path}#{f.get('id', n)}") for n, f in enumerate(features, start=1)]
    if kind in ("Catalog", "Collection"):
        return _catalog_items(path)
    raise InputError("stac_not_stac", path=str(path))


def _catalog_items(path: Path) -> list[pystac.Item]:
    import pystac

    try:
        catalog = pystac.read_file(str(path.resolve()))
        if not isinstance(catalog, pystac.Catalog):
            raise InputError("stac_not_stac", path=str(path))
        items = list(catalog.get_items(recursive=True))
    except InputError:
        raise
    except (pystac.STACError, OSError, KeyError, TypeError, ValueError) as exc:
        raise InputError(
            "stac_catalog_unreadable", path=str(path), detail=f"{type(exc).__name__}: {exc}"
        ) from None
    for item in items:
        _declare_extensions(item)
    items = [i for i in items if i.assets]
    if not items:
        raise InputError("stac_no_items", path=str(path))
    return items


def _declare_extensions(item: pystac.Item) -> None:
    """Declare the eo, raster and projection extensions an item uses without saying so."""
    from pystac.extensions.eo import EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    fields = set(item.properties)
    for asset in item.assets.values():
        fields.update(asset.extra_fields)
    for ext, prefix in ((EOExtension, "eo:"), (RasterExtension, "raster:"), (ProjectionExtension, "proj:")):
        if any(f.startswith(prefix) for f in fields) and not ext.has_extension(item):
            ext.add_to(item)


# ----------------------------------------------------------------------------- bands
def _declares(ext: Any, asset: pystac.Asset) -> bool:
    """Whether the item owning ``asset`` declares the extension ``ext`` (``_declare_extensions`` ran)."""
    import pystac

    return isinstance(asset.owner, pystac.Item) and bool(ext.has_extension(asset.owner))


def _band_names(asset: pystac.Asset) -> list[str]:
    """Common names of an asset's bands, in band order ('' where not given)."""
    from pystac.extensions.eo import EOExtension

    if _declares(EOExtension, asset) and "eo:bands" in asset.extra_fields:
        return [str(b.common_name or "").lower() for b in EOExtension.ext(asset).bands or []]
    bands = asset.extra_fields.get("bands") or []  # STAC 1.1
    return [
        str(b.get("eo:common_name") or b.get("common_name") or "").lower()
        for b in bands
        if isinstance(b, dict)
    ]


def _band_codes(asset: pystac.Asset) -> list[str]:
    """Band names of an asset (``B04``, ``B8A``), upper case, in band order."""
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return [str(b.get("name") or "").upper() for b in bands if isinstance(b, dict)]


def _find(
    item: pystac.Item, names: Iterable[str], codes: Iterable[str] = ()
) -> tuple[pystac.Asset, int] | None:
    """(asset, 1-based band) holding one of the common ``names`` (or band ``codes``); single-band first."""
    names, codes = tuple(names), {c.upper() for c in codes}
    found = []
    for key, asset in item.assets.items():
        common = _band_names(asset)
        named = _band_codes(asset)
        for c in codes & set(named):  # a band code is exact: before a common name bands may share
            found.append((0, len(named), asset, named.index(c) + 1))
        for n in names:
            if n in common:
                found.append((1, len(common), asset, common.index(n) + 1))
        if not common and (key.lower() in names or key.upper() in codes):
            found.append((1, 1, asset, 1))
    if not found:
        return None
    found.sort(key=lambda f: f[:2])
    *_, asset, band = found[0]
    return asset, band


def _href(asset: pystac.Asset) -> str:
    href = asset.get_absolute_href() or asset.href
    remote = _virtual(href)
    if remote is not None:
        return remote
    if href.startswith("file://"):
        href = href[len("file://") :]
    return str(Path(href).resolve())


def _grid(asset: pystac.Asset, band: int, gdal_path: str, source: str) -> dict[str, Any]:
    """Size, transform, CRS, dtype and nodata of one asset band: from STAC fields, else from the file."""
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    shape = transform = crs = dtype = nodata = None
    if _declares(ProjectionExtension, asset):
        proj = ProjectionExtension.ext(asset)
        shape, transform = proj.shape, proj.transform
        crs = proj.crs_string or (f"EPSG:{proj.epsg}" if proj.epsg else None)
    if _declares(RasterExtension, asset) and "raster:bands" in asset.extra_fields:
        described = RasterExtension.ext(asset).bands or []
        if len(described) >= band:
            dtype, nodata = described[band - 1].data_type, described[band - 1].nodata
    else:  # STAC 1.1 puts them in "bands" or on the asset
        listed = asset.extra_fields.get("bands") or [{}]
        rb = (listed[band - 1] if len(listed) >= band else {}) or {}
        dtype, nodata = rb.get("data_type"), rb.get("nodata", asset.extra_fields.get("nodata"))
    if shape and transform and crs and dtype:
        from rasterio.crs import CRS

        return {
            "height": int(shape[0]),
            "width": int(shape[1]),
            "transform": [float(v) for v in transform[:6]],
            "crs": CRS.from_user_input(crs).to_wkt(),
            "dtype": str(getattr(dtype, "value", dtype)),
            "nodata": nodata,
        }
    return _grid_from_file(gdal_path, band, nodata, source)


def _grid_from_file(gdal_path: str, band: int, nodata: Any, source: str) -> dict[str, Any]:
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
        raise InputError("stac_asset_unreadable", path=source, asset=gdal_path, detail=str(exc)) from None
    except IndexError:
        raise InputError("stac_asset_band", path=source, asset=gdal_path, band=band) from None


# ----------------------------------------------------------------------------- VRT
def _target(bands: list[_Band], source: str) -> dict[str, Any]:
    """The finest grid of ``bands``, which must share one CRS and be north-up."""
    crs = {b.grid["crs"] for b in bands}
    if len(crs) != 1 or None in crs:
        raise InputError("stac_crs_mixed", path=source)
    for b in bands:
        a, rot1, _, rot2, e, _ = b.grid["transform"]
        if rot1 != 0 or rot2 != 0 or a <= 0 or e >= 0:
            raise InputError("stac_grid_rotated", path=source)
    return min((b.grid for b in bands), key=lambda g: g["transform"][0])


def _vrt(bands: list[_Band], onto: dict[str, Any], source: str) -> str:
    """VRT XML stacking ``bands`` on the grid ``onto`` (nearest neighbour)."""
    import numpy as np

    if {b.grid["crs"] for b in bands} != {onto["crs"]}:
        raise InputError("stac_crs_mixed", path=source)
    res_x, _, left, _, res_y, top = onto["transform"]
    dtype = np.result_type(*[np.dtype(b.grid["dtype"]) for b in bands]).name
    root = ET.Element("VRTDataset", rasterXSize=str(onto["width"]), rasterYSize=str(onto["height"]))
    srs = ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2")
    srs.text = onto["crs"]
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in (left, res_x, 0.0, top, 0.0, res_y))
    for i, b in enumerate(bands, start=1):
        g, nodata = b.grid, b.grid["nodata"]
        vb = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES.get(dtype, "Float32"), band=str(i))
        ET.SubElement(vb, "Description").text = b.name
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            ET.SubElement(vb, "NoDataValue").text = repr(nodata)
        src = ET.SubElement(
            vb, "ComplexSource" if nodata is not None else "SimpleSource", resampling="nearest"
        )
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = b.path
        ET.SubElement(src, "SourceBand").text = str(b.band)
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
        if nodata is not None:
            ET.SubElement(src, "NODATA").text = repr(nodata)
    return ET.tostring(root, encoding="unicode")


def _missing(found: list[str], wanted: list[str], *, explicit: bool, engine: str) -> list[str]:
    """Bands the run cannot do without: all asked for explicitly; else what the engine needs."""
    if explicit or engine != "water-index":
        return [w for w in wanted if w not in found]
    if "green" not in found:
        return ["green"]
    return [] if {"nir", "swir16"} & set(found) else ["nir", "swir16"]


# ----------------------------------------------------------------------------- masks
def qa_kind(key: str, asset: pystac.Asset) -> str | None:
    """'scl' or 'qa_pixel' when ``asset`` is a cloud-mask asset as Earth Search and Planetary Computer key them."""
    k = key.lower()
    title = (asset.title or "").lower()
    roles = {r.lower() for r in asset.roles or []}
    if k == "scl" or "scene classification" in title or "scene classfication" in title:  # PC's spelling
        return "scl"
    if k == "qa_pixel" or (
        "qa" in k and "cloud" in roles and "classification:bitfields" in asset.extra_fields
    ):
        return "qa_pixel"
    return None


def _masks(
    item: pystac.Item, onto: dict[str, Any], source: str, cloud_mask: str
) -> tuple[tuple[str, str], ...]:
    """The cloud masks the item offers, each a VRT on the scene's grid ``onto``."""
    out: list[tuple[str, str]] = []
    if cloud_mask in ("none",) or cloud_mask not in ("auto", "scl", "qa_pixel", "s2cloudless"):
        return ()
    for key, asset in item.assets.items():
        kind = qa_kind(key, asset)
        if kind is not None and kind not in dict(out) and cloud_mask in ("auto", kind):
            path = _href(asset)
            band = _Band(kind, path, 1, _grid(asset, 1, path, source))
            out.append((kind, _vrt([band], onto, source)))
    if cloud_mask == "s2cloudless":
        chosen = []
        for code, names in S2CLOUDLESS_BANDS:
            hit = _find(item, names, (code, "B" + code[1:].lstrip("0")))
            if hit is None:
                break
            asset, b = hit
            path = _href(asset)
            chosen.append(_Band(code, path, b, _grid(asset, b, path, source)))
        else:
            out.append(("s2bands", _vrt(chosen, onto, source)))
    return tuple(out)


# ----------------------------------------------------------------------------- scenes
def item_scene(
    item: pystac.Item,
    source: str,
    bands: list[str] | None = None,
    engine: str = "water-index",
    cloud_mask: str = "auto",
    sign: Callable[[pystac.Item], pystac.Item] | None = None,
) -> Scene:
    """One item as a scene: its bands stacked as a VRT, its cloud masks, its date.

    ``sign``: returns the item with signed hrefs (Planetary Computer); the scene then reads the
    signed VRT and the journal knows it by the unsigned one (``Scene.key``).
    """
    wanted = [b.lower() for b in (bands or DEFAULT_BANDS.get(engine, DEFAULT_BANDS["water-index"]))]
    scene = _item_scene(item, source, wanted, bands is not None, engine, cloud_mask)
    if sign is None:
        return scene
    signed = _item_scene(sign(item), source, wanted, bands is not None, engine, cloud_mask)
    return Scene(scene.id, signed.path, source, scene.date, signed.masks, key=scene.path)


def _item_scene(
    item: pystac.Item, source: str, wanted: list[str], explicit: bool, engine: str, cloud_mask: str
) -> Scene:
    chosen = []
    for name in wanted:
        hit = _find(item, _ALIASES.get(name, (name,)))
        if hit is None:
            continue
        asset, band = hit
        path = _href(asset)
        chosen.append(_Band(name, path, band, _grid(asset, band, path, source)))
    missing = _missing([b.name for b in chosen], wanted, explicit=explicit, engine=engine)
    if missing:
        available = sorted({n for a in item.assets.values() for n in _band_names(a) if n})
        raise InputError(
            "stac_band_missing",
            field="stac_bands",
            path=source,
            bands=" or ".join(missing),
            available=f" (its bands: {', '.join(available)})" if available else "",
        )
    onto = _target(chosen, source)
    date = normalise_date(item.properties.get("datetime") or item.properties.get("start_datetime"))
    return Scene(item.id, _vrt(chosen, onto, source), source, date, _masks(item, onto, source, cloud_mask))


def stac_scenes(
    path: Path, bands: list[str] | None = None, engine: str = "water-index", cloud_mask: str = "auto"
) -> list[Scene]:
    """One scene per item of a STAC Item / ItemCollection / Catalog file, its bands stacked as a VRT."""
    items = read_items(path)
    return [item_scene(item, f"{path}#{item.id}", bands, engine, cloud_mask) for item in items]


def cloud_cover(item: pystac.Item) -> float | None:
    """The item's ``eo:cloud_cover`` (percent), when it says."""
    value = item.properties.get("eo:cloud_cover")
    return float(value) if isinstance(value, (int, float)) else None
