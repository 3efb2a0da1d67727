"""Error codes raised in core/run, with their neutral words (see core.errors).

Templates hold facts as ``{params}``; options only as ``{option}`` (the error's field) or
``{opt_NAME}``, which each front end fills with its own name (a flag, a field, a parameter).
"""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {
    # planning a scene (run/plan)
    "band_missing": Message("{path}: band {band} does not exist (the raster has {count} bands)"),
    "overlap_too_large": Message("{option} must be between 0 and {most} pixels, got {value}"),
    "overlap_stack": Message(
        "{option} {value} is too large: {stack} chips would cover one pixel (at most {most})",
        "use {option} below about {hint}",
    ),
    "simplify_in_degrees": Message(
        "{path}: {option} {value} is in degrees for this raster ({crs}), over 100 pixels; "
        "a tolerance in metres needs a projected raster"
    ),
    "aoi_outside": Message("{aoi}: the area of interest does not overlap {path}"),
    "scene_too_big": Message(
        "{path}: {width} x {height} px to map is more than the {limit} px limit",
        "map part of it with {opt_aoi}, or raise {opt_max_pixels}",
    ),
    "no_valid_pixels": Message("{path}: the raster has no valid pixels (all nodata)"),
    "texts_missing": Message(
        "{path}: chips {chips} have no model text in the chips layer",
        "revectorize needs the output of a finished run",
    ),
    # the outputs and the work folder (run/preflight)
    "mask_needs_one_scene": Message(
        "{path}: a mask GeoTIFF needs a single input raster ({scenes} scenes given)"
    ),
    "output_is_input": Message("{path}: the output would overwrite an input raster"),
    "output_is_folder": Message("{path}: the output is a folder"),
    "output_exists": Message("{path}: the output exists", "use {opt_overwrite} to replace it"),
    "output_not_writable": Message("{path}: cannot write to {folder} ({reason})"),
    "disk_full": Message(
        "{folder}: the mosaic of {scene} needs {needed} GB of temporary space but {free} GB is free there",
        "free space, map less with {opt_aoi}, or choose another work folder with {opt_workdir}",
    ),
    "no_scene_mapped": Message("no scene was mapped"),
    "crs_unknown": Message("{value}: unknown {option}", "use e.g. EPSG:4326"),
    # revectorize
    "not_a_run": Message("{path}: not the output of a segment run (no {layer!r} layer: {detail})"),
    "run_not_found": Message("{path}: run GeoPackage not found"),
    "run_without_inputs": Message("{path}: its run table does not say which rasters were mapped"),
    "revectorize_cannot_change": Message(
        "revectorize cannot change {names} (the chips were decided by the run)"
    ),
    "revectorize_onto_run": Message("{path}: write the new polygons to another file than the run {run}"),
    "run_scenes_gone": Message("{path}: its scenes {scenes} are not among its inputs any more"),
    "output_busy": Message(
        "{path}: another run is writing this output ({holder})", "wait for it, or choose another output"
    ),
    # Ray
    "ray_missing": Message(
        "{opt_executor} ray needs Ray in the Python that runs the job",
        "install it there (pip install ray), or run without {opt_executor} ray",
    ),
    "ray_unreachable": Message(
        "cannot join the Ray cluster {address}: {reason}", "check the address and that the cluster is running"
    ),
    "ray_gpus": Message(
        "{option} is {per} but the Ray cluster has {gpus} GPUs",
        "lower {option}, or send the run to a cluster with GPUs",
    ),
}
