"""Whole messages for the codes the dialogs and Processing word all of themselves.

Some errors are more than a problem and a remedy: every scene failed (the first one's error
in the same words), another run holds the output, Ray missing or out of reach, the worker
Python lacking packages, the GPU's memory; others call for an action the front end offers
in its own way (Download… next to the VAE file, Worker setup…, a box to tick). Each function
here writes such a message from the error's code, facts and field, the front end's names for
its options (``wording.labels``), its style (``DIALOG`` or ``PROCESSING``) and the job's
options (the model, the output, the Ray address the run used). No QGIS import: text only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..core import rules
from ..core.errors import ErrorInfo, Wording, render

DIALOG = "dialog"
PROCESSING = "processing"
VAE_SIZE = "8.5 MB"  # setup_plan.VAE_MB
WORKER_SETUP = "Raster ▸ PaliGemma Water ▸ Worker setup…"

# (error, the front end's wording, its style, the job's options) -> one message
Whole = Callable[[ErrorInfo, Wording, str, Mapping[str, Any]], str]


def say(info: ErrorInfo, wording: Wording) -> str:
    """``info`` in ``wording``'s words: its whole message for the code, else the core's
    templates with its labels and remedies; a sentence from before codes through its ``legacy``."""
    whole = wording.whole.get(info.code)
    if whole is not None:
        return whole(info, wording)
    if info.params.get("legacy_message") and "legacy" in wording.whole:
        return wording.whole["legacy"](info, wording)
    return render(info, wording)


def label(wording: Wording, name: str | None) -> str | None:
    """The front end's name for an option, None when it has none (it never asks for a default)."""
    return wording.labels.get(name) if name else None


def option(options: Mapping[str, Any], name: str) -> Any:
    """A job option, also inside a change job's ``segment`` options."""
    value = options.get(name)
    if value is None and isinstance(options.get("segment"), Mapping):
        value = options["segment"].get(name)
    return value


def _either(parts: list[str]) -> str:
    """'a, b, or c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f", or {parts[-1]}"


def _prefixed(name: str | None, text: str) -> str:
    """'NAME: text' when the front end has a name for the option; else the text alone."""
    return f"{name}: {text}" if name else text


def legacy(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    """A sentence raised before codes: as the core wrote it, after the field's name, without the
    input's path in front (the form shows the raster)."""
    text = str(info.params["legacy_message"])
    raster = options.get("raster")
    if isinstance(raster, str) and raster and text.startswith(f"{raster}: "):
        text = text[len(raster) + 2 :]
    name = label(wording, info.field)
    return f"{name}: {text}" if name and not text.startswith(name) else text


def missing_packages(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    packages = ", ".join(info.params.get("packages") or []) or "a package"
    needed = "the PaliGemma engine" if info.params.get("engine_only") else "every engine"
    where = "Worker setup… (or Run again and answer Yes)" if style == DIALOG else WORKER_SETUP
    return f"The worker Python lacks {packages} (needed by {needed}): set up the worker in {where}."


def band_unknown(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    """The water index lacks its NIR or SWIR band: the band fields, or the sensor's preset."""
    swir = info.field == "swir"
    role = "SWIR" if swir else "NIR or SWIR"
    preset = label(wording, "preset")
    if style == DIALOG:
        field = label(wording, info.field) or label(wording, "nir") or "The band fields"
        return (
            f"{field}: the water index needs a {role} band, and this raster does not say which band that "
            f"is. Choose it there (NIR of a NAIP tile: 4), or the sensor's band {preset or 'preset'}."
        )
    fixes = [f"{preset} to the sensor preset ({', '.join(rules.PRESETS)})"] if preset else []
    nir, swir_name = label(wording, "nir"), label(wording, "swir")
    band = swir_name if swir else (f"{nir} (or {swir_name})" if nir and swir_name else nir)
    if band:  # Processing shows the band numbers under Advanced parameters
        fixes.append(f"{band} to its band number (Advanced parameters)")
    where = _where(info, options)
    return (
        f"{where + ': ' if where else ''}the water index needs a {role} band and the raster does not name "
        f"its bands: {'set ' + _either(fixes) if fixes else 'choose a raster that names them'}."
    )


def _where(info: ErrorInfo, options: Mapping[str, Any]) -> str | None:
    """The file an error is about: its own, else the job's one raster."""
    where = info.params.get("where") or info.params.get("path")
    raster = options.get("raster")
    return str(where) if where else (raster if isinstance(raster, str) and raster else None)


def vae_missing(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    field = label(wording, "vae")
    missing = "vae-oid.npz (the mask codec) is not on this computer"
    if style == DIALOG:
        field = field or "VAE file"
        return (
            f"{field}: {missing}. Press Download… next to '{field}' ({VAE_SIZE}, once), or choose the file."
        )
    fix = f"set {field} to the file, or download it once" if field else "download it once"
    return _prefixed(field, f"{missing}: {fix} ({WORKER_SETUP} ▸ Download VAE weights).")


def _model(info: ErrorInfo, options: Mapping[str, Any]) -> str:
    return str(info.params.get("model") or option(options, "model") or rules.DEFAULT_MODEL)


def model_access(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    """A gated, private or misspelt model (model_gated, model_not_found)."""
    model = _model(info, options)
    return _prefixed(
        label(wording, "model"),
        f"{model} cannot be downloaded (gated, private or misspelt): accept its licence on "
        f"https://huggingface.co/{model} while logged in, and give the worker your Hugging Face token "
        "(HF_TOKEN, or 'hf auth login' in the worker Python); or choose a model folder.",
    )


def model_not_cached(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    return _prefixed(
        label(wording, "model"),
        f"{_model(info, options)} is not downloaded yet and the Hugging Face Hub cannot be reached: run "
        "once with internet, or choose a model folder.",
    )


def no_cuda(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    device = label(wording, "device")
    if style == DIALOG:
        fix = "choose Automatic or CPU"
    else:
        fix = f"set {device} to Automatic or CPU" if device else "run on the CPU"
    return _prefixed(
        device,
        f"a CUDA GPU was asked for, but the worker's torch sees none: {fix}, or install the CUDA build "
        "of torch (Worker setup…).",
    )


def gpu_memory(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    batch, model, device = (label(wording, name) for name in ("batch_size", "model", "device"))
    the = "the " if style == DIALOG else ""
    fixes = [f"lower {the}{batch}"] if batch else []
    fixes.append(f"choose a smaller {model if style == PROCESSING and model else 'model'}")
    fixes.append(f"set {device} to CPU" if device else "run on the CPU")
    return f"The GPU ran out of memory: {_either(fixes)}."


def _output(info: ErrorInfo, wording: Wording, options: Mapping[str, Any]) -> tuple[str, str]:
    """(the output's name in this front end, its path)."""
    field = info.field if label(wording, info.field) else None
    field = field or ("out_dir" if "out_dir" in options else "output")
    target = info.params.get("path") or options.get(field) or options.get("output") or ""
    return label(wording, field) or "The output", str(target)


def output_exists(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    name, target = _output(info, wording, options)
    if style == DIALOG:
        box = label(wording, "overwrite")
        fix = f"Tick '{box}' or choose another name." if box else "Choose another name."
        return f"{name}: {target} exists. {fix}"
    return f"{name}: {target} exists; choose another output."


def output_busy(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    """Another run (a second QGIS, a terminal, a scheduled job) holds the output: not an old file."""
    name, target = _output(info, wording, options)
    holder = info.params.get("holder")
    who = f" ({holder})" if holder else ""
    wait = "wait for it to finish" if style == DIALOG else "wait for it"
    return f"{name}: another run is writing {target}{who}: {wait}, or choose another {name}."


def all_scenes_failed(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    """Every scene failed: how many, and the first one's error in the same words."""
    params = info.params
    first = ErrorInfo.from_data(params.get("first") or {"code": "no_scene_mapped"})
    if first.field == "raster":  # its message names the file: no field name in front
        first = ErrorInfo(first.code, first.params, None)
    inner = say(first, wording)
    scene = params.get("first_scene")
    lead = f"The first, {scene}:" if scene and scene not in inner else "The first:"
    log = "the log panel" if style == DIALOG else "the log"
    return (
        f"Every scene failed ({params.get('count')}), so nothing was written. {lead} {inner}"
        f"{'' if inner.endswith('.') else '.'} Each scene's error is in {log}."
    )


def _ray(wording: Wording, options: Mapping[str, Any]) -> tuple[str, str]:
    """(the Ray address's name here, the address the run used)."""
    address = option(options, "ray_address")
    return label(wording, "ray_address") or "Ray address (Worker setup)", str(
        address or "a Ray on this computer"
    )


def ray_missing(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    name, address = _ray(wording, options)
    problem = f"{name}: the worker Python lacks ray, needed to send the work to {address}"
    if style == DIALOG:
        return (
            f"{problem}: Run again and answer Yes to set it up, or clear the Ray address in Worker setup… "
            "to run here."
        )
    empty = (
        f"leave {name} empty" if label(wording, "ray_address") else "clear the Ray address in Worker setup…"
    )
    return f"{problem}: set it up ({WORKER_SETUP}), or {empty} to run on this computer."


def ray_unreachable(info: ErrorInfo, wording: Wording, style: str, options: Mapping[str, Any]) -> str:
    name, address = _ray(wording, options)
    address = str(info.params.get("address") or address)
    reason = str(info.params.get("reason") or "")
    if "ray[client]" in reason:  # a Ray installed without its client cannot reach ray:// addresses
        reason = "the worker's Ray lacks its client (ray[client])"
    problem = f"{name}: cannot join the Ray cluster {address}: {reason}".rstrip(". ")
    versions = "the cluster must run the worker's Ray and Python versions and see the rasters"
    if style == DIALOG:
        return f"{problem}. Check the address in Worker setup… ({versions}), or clear it to run here."
    empty = f"leave {name} empty" if label(wording, "ray_address") else "clear it in Worker setup…"
    return f"{problem}. Check the address ({versions}), or {empty} to run on this computer."


WHOLE: dict[str, Whole] = {
    "legacy": legacy,
    "missing_packages": missing_packages,
    "band_unknown": band_unknown,
    "vae_missing": vae_missing,
    "model_gated": model_access,
    "model_not_found": model_access,
    "model_not_cached": model_not_cached,
    "no_cuda": no_cuda,
    "gpu_memory": gpu_memory,
    "output_exists": output_exists,
    "train_folder_not_empty": output_exists,  # an export or fine-tune folder that holds files
    "output_busy": output_busy,
    "all_scenes_failed": all_scenes_failed,
    "ray_missing": ray_missing,
    "ray_unreachable": ray_unreachable,
}
