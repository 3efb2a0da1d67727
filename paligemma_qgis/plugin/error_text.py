"""A worker error in the words of the front end that shows it: the dialogs or Processing.

The core's messages speak the command line (``use --nir/--swir``); its errors also carry
the option at fault (``field``) and the kind of problem (``code``), which the worker passes
on. Here they become "choose the NIR band under 'Green / NIR / SWIR band'" in a dialog and
"set NIR to the band number" in Processing. What no rule knows keeps its wording, with any
command-line flag replaced by the front end's name for it: no ``--flag`` reaches a user of
QGIS. No QGIS import (pure text), so every rule is testable on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .options import DEFAULT_MODEL

VAE_SIZE = "8.5 MB"


@dataclass(frozen=True)
class FrontEnd:
    """How one front end names the options (``labels``) and the command-line flags (``flags``)."""

    name: str
    labels: dict[str, str]
    flags: list[tuple[str, str]]  # (pattern, replacement), tried in order


_DIALOG_FLAGS = [
    (r"use --nir/--swir, a preset, or the paligemma engine",
     "choose the NIR or SWIR band under 'Green / NIR / SWIR band', a band Preset, or the PaliGemma engine"),
    (r"use --swir N or a preset", "choose the SWIR band under 'Green / NIR / SWIR band', or a band Preset"),
    (r"use --bands and --green/--nir/--swir instead",
     "choose the bands yourself ('Bands shown to the model' and 'Green / NIR / SWIR band') instead"),
    (r"--bands needs", "the bands need"),
    (r"\(looked at --vae, ", "(looked at the VAE file field, "),
    (r"or pass --vae FILE", "or choose it in the VAE file field"),
    (r"(?:use|or) --device cpu", "or set Device to CPU"),
    (r"\(use --overwrite to replace it\)", "(tick the box that allows replacing it)"),
    (r"pass allow_custom_vae=True \(command line: --allow-custom-vae\)",
     "tick 'Accept a VAE that is not Google's vae-oid.npz'"),
    (r"pass force=True \(command line: --force\) to replace it", "delete it first"),
    (r"\(HF_HUB_OFFLINE or --offline\)", "(HF_HUB_OFFLINE)"),
    (r"--max-objects", "the most objects per chip"),
    (r"--ray-address", "the Ray address in Worker setup"),
    (r"--fail-fast", "'Stop at the first failing scene'"),
    (r"with --aoi", "with the Area choice"),
    (r"--block-size", "Spatial block side"),
    (r"--resolution", "Target resolution"),
    (r"--batch-size", "Batch size"),
    (r"--model", "Model"),
    (r"--vae", "VAE file"),
]  # fmt: skip
_PROCESSING_FLAGS = [
    (r"use --nir/--swir, a preset, or the paligemma engine",
     "set NIR (or SWIR) to its band number, BANDS to the sensor preset (naip, sentinel2, landsat89), "
     "or ENGINE to PaliGemma"),
    (r"use --swir N or a preset", "set SWIR to its band number, or BANDS to the sensor preset"),
    (r"use --bands and --green/--nir/--swir instead", "set BANDS to band numbers and GREEN/NIR/SWIR instead"),
    (r"--bands needs", "BANDS needs"),
    (r"\(looked at --vae, ", "(looked at the VAE parameter, "),
    (r"or pass --vae FILE", "or set the VAE parameter to the file"),
    (r"(?:use|or) --device cpu", "or set DEVICE to CPU"),
    (r"\(use --overwrite to replace it\)", "(choose another output)"),
    (r"pass allow_custom_vae=True \(command line: --allow-custom-vae\)", "set ALLOW_CUSTOM_VAE"),
    (r"pass force=True \(command line: --force\) to replace it", "delete it first"),
    (r"\(HF_HUB_OFFLINE or --offline\)", "(HF_HUB_OFFLINE)"),
    (r"--max-objects", "the most objects per chip"),
    (r"--ray-address", "RAY_ADDRESS"),
    (r"--fail-fast", "FAIL_FAST"),
    (r"with --aoi", "with AOI"),
    (r"--block-size", "BLOCK_SIZE"),
    (r"--resolution", "RESOLUTION"),
    (r"--batch-size", "BATCH_SIZE"),
    (r"--model", "MODEL"),
    (r"--vae", "VAE"),
]  # fmt: skip

SEGMENT_DIALOG = FrontEnd(
    "dialog",
    {
        "raster": "Input raster",
        "bands": "Bands shown to the model",
        "preset": "Preset",
        "green": "Green / NIR / SWIR band",
        "nir": "Green / NIR / SWIR band",
        "swir": "Green / NIR / SWIR band",
        "vae": "VAE file",
        "model": "Model",
        "device": "Device",
        "batch_size": "Batch size",
        "aoi": "Area",
        "output": "GeoPackage",
        "resolution": "Target resolution",
        "ray_address": "Ray address (Worker setup)",
    },
    _DIALOG_FLAGS,
)
EXPORT_DIALOG = FrontEnd(
    "dialog",
    {
        **SEGMENT_DIALOG.labels,
        "bands": "Chip bands (R,G,B)",
        "green": "Green / NIR / SWIR",
        "nir": "Green / NIR / SWIR",
        "swir": "Green / NIR / SWIR",
        "labels": "Known water",
        "out_dir": "Folder",
        "output": "Folder",
    },
    _DIALOG_FLAGS,
)
PROCESSING = FrontEnd(
    "processing",
    {
        "raster": "INPUT",
        "bands": "BANDS",
        "preset": "BANDS",
        "green": "GREEN",
        "nir": "NIR",
        "swir": "SWIR",
        "vae": "VAE",
        "model": "MODEL",
        "device": "DEVICE",
        "batch_size": "BATCH_SIZE",
        "aoi": "AOI",
        "output": "OUTPUT",
        "out_dir": "OUTPUT",
        "labels": "LABELS_VECTOR / LABELS_MASK",
        "resolution": "RESOLUTION",
        "ray_address": "RAY_ADDRESS",
    },
    _PROCESSING_FLAGS,
)
# The region algorithm (segment_water_region): its inputs are two parameters.
PROCESSING_REGION = FrontEnd(
    "processing",
    {
        **PROCESSING.labels,
        "raster": "INPUTS / FOLDER",
        "stac_api": "STAC_API",
        "collection": "STAC_COLLECTION",
        "bbox": "STAC_EXTENT",
        "datetime": "STAC_START / STAC_END",
        "max_cloud": "STAC_MAX_CLOUD",
        "limit": "STAC_LIMIT",
        "sign": "STAC_SIGN",
        "cloud_mask": "CLOUD_MASK",
    },
    _PROCESSING_FLAGS,
)

_ANY_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def without_flags(text: str, front: FrontEnd) -> str:
    """``text`` with the command line's flags replaced by the front end's words; none is left."""
    for pattern, replacement in front.flags:
        text = re.sub(pattern, replacement, text)
    return _ANY_FLAG.sub(lambda m: m.group(1).replace("-", " "), text)


def _strip_path(message: str, path: str | None) -> str:
    """'/data/naip.tif: the raster has ...' -> 'the raster has ...' (the form names the file already)."""
    if path and message.startswith(f"{path}: "):
        return message[len(path) + 2 :]
    return message


def translate(message: str, info: dict, options: dict, front: FrontEnd) -> str:
    """One line for ``front`` from a worker error: ``message``, its ``info`` (field, code, kind,
    packages) and the job ``options`` (to name the model, the output ...)."""
    code = info.get("code")
    field = info.get("field")
    if field is None and (
        code in ("output_exists", "output_busy") or info.get("kind") == "OutputExistsError"
    ):
        field = "out_dir" if "out_dir" in options else "output"
    label = front.labels.get(field or "", "")
    dialog = front.name == "dialog"
    raster = options.get("raster")
    model = options.get("model") or DEFAULT_MODEL

    if code == "missing_packages":
        packages = ", ".join(info.get("packages") or []) or "a package"
        needed = "the PaliGemma engine" if info.get("engine_only") else "every engine"
        where = (
            "Worker setup… (or Run again and answer Yes)"
            if dialog
            else "Raster ▸ PaliGemma Water ▸ Worker setup…"
        )
        return f"The worker Python lacks {packages} (needed by {needed}): set up the worker in {where}."
    if code == "band_unknown":
        role = "SWIR" if field == "swir" else "NIR or SWIR"
        if dialog:
            return (
                f"{label}: the water index needs a {role} band, and this raster does not say which band "
                "that is. Choose it there (NIR of a NAIP tile: 4), or the sensor's band Preset."
            )
        return (
            f"{raster}: the water index needs a {role} band and the raster does not name its bands: set "
            f"{'SWIR' if field == 'swir' else 'NIR (or SWIR)'} to its band number, or BANDS to the sensor "
            "preset (naip, sentinel2, landsat89)."
        )
    if code == "vae_missing":
        if dialog:
            return (
                "VAE file: vae-oid.npz (the mask codec) is not on this computer. Press Download… next to "
                f"'VAE file' ({VAE_SIZE}, once), or choose the file."
            )
        return (
            "VAE: vae-oid.npz (the mask codec) is not on this computer: set VAE to the file, or download it "
            "once (Raster ▸ PaliGemma Water ▸ Worker setup… ▸ Download VAE weights)."
        )
    if code in ("model_gated", "model_not_found"):
        access = (
            f"accept its licence on https://huggingface.co/{model} while logged in, and give the worker your "
            "Hugging Face token (HF_TOKEN, or 'hf auth login' in the worker Python)"
        )
        return f"{label}: {model} cannot be downloaded (gated, private or misspelt): {access}; or choose a model folder."
    if code == "model_not_cached":
        return (
            f"{label}: {model} is not downloaded yet and the Hugging Face Hub cannot be reached: run once "
            "with internet, or choose a model folder."
        )
    if code == "no_cuda":
        fix = "choose Automatic or CPU" if dialog else "set DEVICE to Automatic or CPU"
        return (
            f"{label}: a CUDA GPU was asked for, but the worker's torch sees none: {fix}, or install the CUDA "
            "build of torch (Worker setup…)."
        )
    if code == "gpu_memory":
        fix = (
            "lower the Batch size, choose a smaller model, or set Device to CPU"
            if dialog
            else "lower BATCH_SIZE, choose a smaller MODEL, or set DEVICE to CPU"
        )
        return f"The GPU ran out of memory: {fix}."
    if code == "output_busy":
        return _output_busy(message, options, label, dialog)
    if code == "all_scenes_failed":
        return _all_scenes_failed(info, options, front)
    if code in ("ray_missing", "ray_unreachable"):
        return _ray_problem(code, message, options, dialog)
    if code == "output_exists" or info.get("kind") == "OutputExistsError":
        target = options.get("out_dir") or options.get("output") or ""
        if dialog:
            box = "Replace an earlier export" if "out_dir" in options else "Overwrite an existing file"
            return f"{label}: {target} exists. Tick '{box}' or choose another name."
        return f"{label}: {target} exists; choose another output."
    text = without_flags(_strip_path(message, raster), front)
    if label and not text.startswith(label):
        return f"{label}: {text}"
    return text


def _output_busy(message: str, options: dict, label: str, dialog: bool) -> str:
    """Another run (a second QGIS, a terminal, a scheduled job) holds the output: not an old file."""
    target = options.get("output") or ""
    holder = re.search(r"another run is writing this output \((.*?)\);", message)
    who = f" ({holder.group(1)})" if holder else ""
    fix = (
        "wait for it to finish, or choose another GeoPackage"
        if dialog
        else "wait for it, or choose another OUTPUT"
    )
    return f"{label}: another run is writing {target}{who}: {fix}."


def _all_scenes_failed(info: dict, options: dict, front: FrontEnd) -> str:
    """Every scene failed: how many, and the first one's error in the front end's words."""
    from ..core.errors import ErrorInfo, render

    params = info.get("params") or {}
    count = params.get("count")
    first = params.get("first") or {}
    first_info = {"code": first.get("code"), "field": first.get("field"), "params": first.get("params") or {}}
    if first_info["field"] == "raster":  # the message names the file: no field label in front
        first_info["field"] = None
    first_message = render(ErrorInfo.from_data(first))
    inner = translate(first_message, first_info, {**options, "raster": None}, front)
    scene = params.get("first_scene")
    lead = f"The first, {scene}:" if scene and scene not in inner else "The first:"
    where = "the log panel" if front.name == "dialog" else "the log"
    return (
        f"Every scene failed ({count}), so nothing was written. {lead} {inner}"
        f"{'' if inner.endswith('.') else '.'} Each scene's error is in {where}."
    )


def _ray_problem(code: str, message: str, options: dict, dialog: bool) -> str:
    """Ray missing in the worker Python, or a Ray cluster that cannot be joined."""
    address = options.get("ray_address") or "local"
    if code == "ray_missing":
        if dialog:
            return (
                "Ray address (Worker setup): the worker Python lacks ray, needed to send the work to "
                f"{address}: Run again and answer Yes to set it up, or clear the Ray address in Worker "
                "setup… to run here."
            )
        return (
            f"RAY_ADDRESS: the worker Python lacks ray, needed to send the work to {address}: set it up "
            "(Raster ▸ PaliGemma Water ▸ Worker setup…), or leave RAY_ADDRESS empty to run on this computer."
        )
    reason = without_flags(message, SEGMENT_DIALOG if dialog else PROCESSING).rstrip(". ")
    if "ray[client]" in reason:  # a Ray installed without its client cannot reach ray:// addresses
        reason = f"cannot join the Ray cluster {address}: the worker's Ray lacks its client (ray[client])"
    if dialog:
        return (
            f"Ray address (Worker setup): {reason}. Check the address in Worker setup… (the cluster must "
            "run the worker's Ray and Python versions and see the rasters), or clear it to run here."
        )
    return (
        f"RAY_ADDRESS: {reason}. Check the address (the cluster must run the worker's Ray and Python "
        "versions and see the rasters), or leave RAY_ADDRESS empty to run on this computer."
    )
