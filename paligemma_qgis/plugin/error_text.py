"""A worker error in the words of the front end that shows it: the dialogs or Processing.

Errors arrive as a code, its facts and the option at fault (core.errors; the worker's error
event carries ``code``, ``params``, ``field``, ``kind`` and the neutral ``message``). A front
end here is a table: its name for each option it shows (a field label in a dialog, a
parameter name in Processing), its own remedies where the core's neutral one names an option
it lacks, and whole messages for the codes it words all of itself (error_whole).
core.errors.render fills the templates; nothing rewrites the core's sentences. No QGIS
import (text only), so every rendering is testable on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ErrorInfo, Wording, placeholders
from .error_whole import DIALOG, PROCESSING, WHOLE, say

__all__ = [
    "DIALOG",
    "EXPORT_DIALOG",
    "PLAIN_NAMES",
    "PROCESSING",
    "SEGMENT_DIALOG",
    "FrontEnd",
    "processing",
    "say",
    "scene_errors",
    "translate",
]


class Labels(dict):
    """A front end's names for options. One it has no name for reads "this option", never its raw
    name (a test asks every front end to name what its messages use)."""

    def __missing__(self, key: str) -> str:
        return "this option"


# Remedies in a front end's words, for codes whose core remedy names an option it may lack or an
# action it offers otherwise: each front end takes, per code, the first one whose options it has.
_GUI_REMEDIES: dict[str, tuple[str, ...]] = {
    "scene_too_big": (
        "map a part of it with {opt_aoi}, or at a coarser {opt_resolution}",
        "map a part of it, or at a coarser resolution",
    ),
    "disk_full": ("free space there, or map less with {opt_aoi}", "free space there, or map a smaller area"),
    "mosaic_no_space": (
        "free space there, or map less with {opt_aoi}",
        "free space there, or map a smaller area",
    ),
    "compile_needs_static": ("the static cache is an option of the command line only",),
    "ray_gpus": ("lower the GPUs per model actor, or send the run to a cluster with GPUs",),
    "raster_read_failed": (
        "repair the file or download it again (the command line can map unreadable blocks as nodata)",
    ),
    "occurrence_no_observation": (
        "check {opt_start} / {opt_end} against the scene dates",
        "check the dates asked for against the scenes' dates",
    ),
    "vae_checksum": (
        "the file may be a partial download or a different VAE; to use it anyway, tick "
        "'{opt_allow_custom_vae}'",
        "the file may be a partial download or a different VAE: download vae-oid.npz again (Worker "
        "setup…), or choose Google's file",
    ),
    "vae_exists": ("delete it first",),
    "stac_band_missing": (
        "choose other bands with {opt_stac_bands}",
        "choose a collection whose items hold the bands the engine needs",
    ),
    "search_items_unreadable": (
        "choose another output, or delete the files the interrupted run left beside it to start over",
    ),
    "folder_rasters_deeper": ("choose the rasters in its subfolders",),
    "labels_invalid": ("fix them (QGIS: Fix geometries)",),
    # export-pairs only (the command line): no QGIS front end reads image folders
    "image_too_large": ("only the command line reads images this large, for files you trust",),
    "pairs_same_chip": ("rename one of them or leave one out",),
}
_BANDS_YOURSELF = (
    "choose the bands yourself ('{opt_bands}' and '{opt_green}') instead",
    "choose the bands yourself instead",
)
_DIALOG_REMEDIES: dict[str, tuple[str, ...]] = {
    **_GUI_REMEDIES,
    "preset_mismatch": _BANDS_YOURSELF,
    "preset_rgb_missing": _BANDS_YOURSELF,
    "band_out_of_range": ("choose a band from 1 to {count} in '{option}'",),
}
_SET_BANDS = (
    "set {opt_bands} to band numbers and {opt_green}/{opt_nir}/{opt_swir} instead",
    "set {opt_bands} to band numbers instead",
    "choose the bands yourself instead",
)
_PROCESSING_REMEDIES: dict[str, tuple[str, ...]] = {
    **_GUI_REMEDIES,
    "scene_too_big": (
        "set {opt_aoi} to a part of it, or a coarser {opt_resolution}",
        *_GUI_REMEDIES["scene_too_big"][1:],
    ),
    "preset_mismatch": _SET_BANDS,
    "preset_rgb_missing": _SET_BANDS,
    "band_out_of_range": ("set {option} to a band from 1 to {count}",),
    "vae_checksum": (
        "the file may be a partial download or a different VAE; to use it anyway, set {opt_allow_custom_vae}",
        *_GUI_REMEDIES["vae_checksum"][1:],
    ),
}


def _options_in(template: str) -> set[str]:
    return {name[4:] for name in placeholders(template) if name.startswith("opt_")}


def fitting_remedies(variants: Mapping[str, tuple[str, ...]], labels: Mapping[str, str]) -> dict[str, str]:
    """Per code, the first remedy whose options the front end names (the last names none)."""
    return {
        code: next(text for text in candidates if _options_in(text) <= set(labels))
        for code, candidates in variants.items()
    }


@dataclass(frozen=True)
class FrontEnd:
    """One front end: its style (DIALOG or PROCESSING), names for options and own remedies."""

    name: str
    labels: Mapping[str, str]
    remedies: Mapping[str, str] = field(default_factory=dict)

    def wording(self, options: Mapping[str, Any] | None = None) -> Wording:
        """The core Wording of this front end for one job (its whole messages name the job's model,
        output, Ray address...)."""
        bound = dict(options or {})
        whole = {code: functools.partial(fn, style=self.name, options=bound) for code, fn in WHOLE.items()}
        return Wording(self.name, Labels(self.labels), self.remedies, whole)


# Plain words for options that only other commands have (the command line's change, export-pairs,
# occurrence ...): a message that reaches a GUI front end naming one still reads as English.
PLAIN_NAMES = {
    "before": "the before map",
    "after": "the after map",
    "reference": "the known water",
    "start": "the first date",
    "end": "the last date",
    "names": "the list of image names",
    "allow_large_images": "reading images over the size limit",
    "strict_labels": "refusing invalid label polygons",
    "on_read_error": "mapping unreadable blocks as nodata",
    "allow_custom_vae": "accepting a VAE that is not Google's",
    "force": "replacing the file",
    "workdir": "the work folder",
    "cache": "the static KV cache",
    "max_pixels": "the pixel limit",
    "max_new_tokens": "the token budget",
    "max_objects": "the most objects per chip",
    "cloud_mask": "the cloud mask",
    "mask_classes": "the masked cloud classes",
    "recursive": "reading subfolders",
    "restart": "starting over",
    "stac_api": "a STAC API",
    "collection": "a collection",
    "datetime": "dates",
    "bbox": "an extent",
    "aoi": "an area of interest",
}


def dialog(labels: Mapping[str, str]) -> FrontEnd:
    """A dialog's front end: ``labels`` option -> the field's label as the dialog shows it."""
    return FrontEnd(DIALOG, {**PLAIN_NAMES, **labels}, fitting_remedies(_DIALOG_REMEDIES, labels))


def processing(labels: Mapping[str, str]) -> FrontEnd:
    """A Processing algorithm's front end: ``labels`` option -> its parameter's name."""
    return FrontEnd(PROCESSING, {**PLAIN_NAMES, **labels}, fitting_remedies(_PROCESSING_REMEDIES, labels))


_BAND_FIELD = "Green / NIR / SWIR band"
SEGMENT_DIALOG = dialog(
    {
        "raster": "Raster",
        "engine": "Engine",
        "bands": "Bands shown to the model",
        "preset": "Preset",
        "green": _BAND_FIELD,
        "nir": _BAND_FIELD,
        "swir": _BAND_FIELD,
        "aoi": "Area",
        "model": "Model",
        "vae": "VAE file",
        "device": "Device",
        "output": "GeoPackage",
        "overwrite": "Overwrite an existing file",
        "overlap": "Chip overlap",
        "min_area_m2": "Min. water area",
        "resolution": "Resolution",
        "batch_size": "Batch size",
        "dissolve": "Merge water across scenes",
        "fail_fast": "Stop at the first failing scene",
        "ray_address": "Ray address (Worker setup)",
        "executor": "Ray address (Worker setup)",
    }
)
EXPORT_DIALOG = dialog(
    {
        "raster": "Raster",
        "labels": "Known water",
        "label_layer": "Known water",
        "mask_threshold": "Labels (water >)",
        "bands": "Chip bands (R,G,B)",
        "preset": "Preset",
        "green": "Green / NIR / SWIR",
        "nir": "Green / NIR / SWIR",
        "swir": "Green / NIR / SWIR",
        "size": "Chip size",
        "vae": "VAE file",
        "valid_fraction": "Validation share",
        "empty_policy": "Chips without water",
        "empty_cap": "Chips without water",
        "out_dir": "Folder",
        "output": "Folder",
        "overwrite": "Replace an earlier export",
        "overlap": "Chip overlap",
        "resolution": "Target resolution",
        "min_object_pixels": "Smallest water object",
        "block_size": "Spatial block side",
        "seed": "Random seed",
        "allow_custom_vae": "Accept a VAE that is not Google's vae-oid.npz",
    }
)


def translate(message: str, info: Mapping[str, Any], options: Mapping[str, Any], front: FrontEnd) -> str:
    """One line for ``front`` from a worker error: its neutral ``message``, its ``info`` (the
    event's code, params, field and kind) and the job's ``options`` (the model, the output ...)."""
    if not info.get("code"):  # the plugin's own words (the worker did not start, a copy failed)
        return message
    error = ErrorInfo.from_data(info)
    if error.code == "legacy" and info.get("kind") == "OutputExistsError":
        error = ErrorInfo("output_exists", error.params, error.field)  # until its raise has a code
    return say(error, front.wording(options))


def scene_errors(
    details: Mapping[str, Any], front: FrontEnd, options: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Each failed scene's error in ``front``'s words: from its code (``failed_scene_errors``) when it
    travelled with it, else its neutral text (``failed_scenes``). ``details``: a run summary's details,
    or the params of ``all_scenes_failed``."""
    codes = details.get("failed_scene_errors") or {}
    wording = front.wording(options)
    return {
        scene: say(ErrorInfo.from_data(codes[scene]), wording)
        if isinstance(codes.get(scene), Mapping)
        else str(text)
        for scene, text in (details.get("failed_scenes") or {}).items()
    }
