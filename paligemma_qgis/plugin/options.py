"""Choices shared by the dialog and the Processing algorithms, and the job dicts they build.

The names, defaults and choices are core.rules' (standard library only, so QGIS imports it):
here they only get their labels. The plugin builds plain JSON-ready dicts: the worker turns
them into core.specs.segment_spec and validates them there, so QGIS never imports the core's
heavy modules (rasterio, torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from qgis.core import QgsMapLayer, QgsProviderRegistry, QgsRasterLayer

from ..core import rules

# Labels over core.rules' names, in the order the choices were published: a Processing enum
# is an index that scripts and models store (ENGINE 1 is the water index), so it keeps its order.
ENGINE_LABELS: dict[rules.EngineName, str] = {
    "paligemma": "PaliGemma (vision-language model)",
    "water-index": "Water index (NDWI / MNDWI, no model)",
}
DEVICE_LABELS: dict[rules.DeviceName, str] = {
    "auto": "Automatic (GPU when available)",
    "cuda": "CUDA GPU",
    "cpu": "CPU",
    "mps": "Apple GPU (MPS)",
}
PRESET_LABELS: dict[rules.PresetName, str] = {
    "naip": "NAIP / aerial RGBN (R,G,B,NIR)",
    "sentinel2": "Sentinel-2 L1C/L2A (B1..B12)",
    "landsat89": "Landsat 8/9 OLI (B1..B7)",
}


def labelled(names: tuple[str, ...], labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(value sent to the worker, label shown) for every name of a rule, in the labels' order.

    A name of the rule without a label, or a label of no rule, fails at import: the plugin
    cannot offer a choice the core does not know, nor miss one it added.
    """
    if set(labels) != set(names):
        raise RuntimeError(f"labels {sorted(labels)} do not match the rule's names {sorted(names)}")
    return list(labels.items())


# (value sent to the worker, label shown to the user)
ENGINES: list[tuple[str, str]] = labelled(rules.ENGINES, ENGINE_LABELS)
DEFAULT_ENGINE: rules.EngineName = rules.DEFAULT_ENGINE
DEVICES: list[tuple[str, str]] = labelled(rules.DEVICES, DEVICE_LABELS)
DEFAULT_DEVICE: rules.DeviceName = rules.DEFAULT_DEVICE
# Band presets; "" lets the worker read band descriptions.
PRESETS: list[tuple[str, str]] = [
    ("", "Automatic (band descriptions, else bands 1,2,3)"),
    *labelled(rules.PRESETS, PRESET_LABELS),
]
DEFAULT_MODEL = rules.DEFAULT_MODEL
KNOWN_MODELS = list(
    dict.fromkeys(
        [
            rules.DEFAULT_MODEL,
            "google/paligemma2-3b-mix-448",
            "google/paligemma2-10b-mix-224",
            "google/paligemma-3b-mix-224",
        ]
    )
)
AUTO_OVERLAP = -1  # the dialog's and Processing's "Auto": rules.default_overlap(engine), in the worker


def engine_index(name: str) -> int:
    """The position of an engine among the choices (a Processing enum's value)."""
    return [value for value, _ in ENGINES].index(name)


def device_index(name: str) -> int:
    return [value for value, _ in DEVICES].index(name)


def raster_file(layer: QgsMapLayer | None) -> str | None:
    """The local file behind a raster layer, or None (web services, in-memory rasters)."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    return path if Path(path).is_file() else None


def gdal_path(layer: QgsMapLayer | None) -> str | None:
    """What GDAL in the worker opens for a raster layer: its local file, or a GDAL virtual path
    (``/vsis3/...``, ``/vsicurl/...``: rasters on shared storage a Ray cluster can read too)."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if path.startswith("/vsi") and not path.startswith("/vsimem/"):
        return path
    return path if Path(path).is_file() else None


def segment_job(
    raster: str | list[str],
    output: str,
    *,
    engine: str = rules.DEFAULT_ENGINE,
    bands: str | None = None,
    preset: str | None = None,
    green: int | None = None,
    nir: int | None = None,
    swir: int | None = None,
    overlap: int | None = None,
    resolution: float | None = None,
    aoi: str | None = None,
    min_area_m2: float | None = None,
    model: str | None = None,
    vae: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    dissolve: bool = False,
    ray_address: str | None = None,
    threshold: float | None = None,
    restart: bool = False,
    search: dict | None = None,
    cloud_mask: str | None = None,
) -> dict:
    """A worker job for core.run.driver.segment_raster; unset (None/empty/0) values are left out.

    ``raster``: one input, or a list of them (files, folders, /vsi paths ...: a region run).
    ``ray_address``: Worker setup's (worker_env.ray_address): empty runs in the worker; "local"
    sends the run to a Ray the worker starts on this machine; any other address to that cluster.
    ``search``: a STAC search by the spec's flat names (stac_api, collection, bbox, datetime,
    max_cloud, limit, sign) whose items are mapped instead of ``raster`` (then empty).
    ``cloud_mask``: core.rules.CloudMaskMode (None: the default, auto).
    """
    if isinstance(raster, (list, tuple)):
        raster = [str(r) for r in raster] if len(raster) != 1 else str(raster[0])
    options: dict = {"raster": raster, "output": output, "engine": engine, "overwrite": bool(overwrite)}
    # An interrupted run of the same job continues; one of another job is never replaced silently:
    # the dialog asks first (interrupted.py) and sends ``restart`` when the answer is "Start over".
    if restart:
        options["restart"] = True
    optional = {
        "bands": bands or None,
        "preset": preset or None,
        "green": green or None,
        "nir": nir or None,
        "swir": swir or None,
        "overlap": overlap,
        "resolution": resolution or None,
        "aoi": aoi or None,
        "min_area_m2": min_area_m2,
        "batch_size": batch_size or None,  # chips per batch, also how often a run checks for cancel
        "threshold": threshold if engine == "water-index" else None,  # None: one per scene
    }
    if engine == "paligemma":
        optional.update(
            {
                "model": model or None,
                "vae": vae or None,
                "device": device or None,
            }
        )
    options.update({k: v for k, v in optional.items() if v is not None})
    if search:
        options["raster"] = []
        options.update({k: v for k, v in search.items() if v not in (None, "", [])})
    if cloud_mask:
        options["cloud_mask"] = cloud_mask
    if fail_fast:
        options["fail_fast"] = True
    if dissolve:
        options["dissolve"] = True
    address = (ray_address or "").strip()
    if address:
        options["executor"] = "ray"
        if address != "local":
            options["ray_address"] = address
    return {"task": "segment", "options": options}


# Training-data export (core.train.export.ExportOptions): where the known water comes from.
LABEL_SOURCES: list[tuple[str, str]] = [
    ("layer", "Polygon layer of the project"),
    ("vector", "Vector file (GeoPackage, Shapefile, GeoJSON…)"),
    ("mask", "Mask raster (water where value > threshold)"),
    (rules.WATER_INDEX_LABELS, "Water index (NDWI / MNDWI; a quick start, not ground truth)"),
]
EMPTY_POLICY_LABELS: dict[rules.EmptyPolicy, str] = {
    "cap": "Cap at a share of each split",
    "keep": "Keep all",
    "drop": "Drop all",
}
EMPTY_POLICIES: list[tuple[str, str]] = labelled(rules.EMPTY_POLICIES, EMPTY_POLICY_LABELS)
CHIP_SIZES = rules.CHIP_SIZES
WATER_INDEX_LABELS = rules.WATER_INDEX_LABELS


def export_job(
    raster: str,
    out_dir: str,
    labels: str,
    *,
    label_layer: str | None = None,
    bands: str | None = None,
    preset: str | None = None,
    green: int | None = None,
    nir: int | None = None,
    swir: int | None = None,
    resolution: float | None = None,
    size: int = rules.CHIP_SIZE,
    overlap: int = 0,
    min_object_pixels: int = rules.EXPORT_MIN_OBJECT_PIXELS,
    mask_threshold: float | None = None,
    vae: str | None = None,
    allow_custom_vae: bool = False,
    valid_fraction: float = rules.EXPORT_VALID_FRACTION,
    block_size: int | None = None,
    seed: int = 0,
    empty_policy: str = rules.EXPORT_EMPTY_POLICY,
    empty_cap: float | None = None,
    overwrite: bool = False,
) -> dict:
    """A worker job for core.train.export.export_training_data; unset (None/empty/0) values are left out."""
    options: dict = {
        "raster": raster,
        "out_dir": out_dir,
        "labels": labels,
        "size": int(size),
        "overlap": int(overlap),
        "min_object_pixels": int(min_object_pixels),
        "allow_custom_vae": bool(allow_custom_vae),
        "valid_fraction": float(valid_fraction),
        "seed": int(seed),
        "empty_policy": empty_policy,
        "overwrite": bool(overwrite),
    }
    optional = {
        "label_layer": label_layer or None,
        "bands": [int(b) for b in bands.replace(" ", "").split(",") if b] if bands else None,
        "preset": preset or None,
        "green": green or None,
        "nir": nir or None,
        "swir": swir or None,
        "resolution": resolution or None,
        "mask_threshold": mask_threshold,
        "vae": vae or None,
        "block_size": block_size or None,
        "empty_cap": empty_cap if empty_policy == "cap" else None,
    }
    options.update({k: v for k, v in optional.items() if v is not None})
    return {"task": "export", "options": options}
