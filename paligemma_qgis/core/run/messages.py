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
        "{folder}: the mosaic of {scene} needs {needed} of temporary space but {free} is free there",
        "free space, map less with {opt_aoi}, or choose another work folder with {opt_workdir}",
    ),
    "no_scene_mapped": Message("no scene was mapped"),
    "scene_failed_in_run": Message("{error}"),  # revectorize: the run's own error for the scene
    "crs_unknown": Message("{value}: unknown {option}", "use e.g. EPSG:4326"),
    # revectorize
    "not_a_run": Message("{path}: not the output of a segment run (no {layer!r} layer: {detail})"),
    "run_not_found": Message("{path}: run GeoPackage not found"),
    "run_without_inputs": Message("{path}: its run table does not say which rasters were mapped"),
    "revectorize_search_run": Message(
        "{path}: a run of a STAC search ({api}) cannot be revectorized: the items it found are not kept "
        "after the run",
        "map the search again with other output options",
    ),
    "revectorize_cannot_change": Message(
        "revectorize cannot change {names} (the chips were decided by the run)"
    ),
    "revectorize_onto_run": Message("{path}: write the new polygons to another file than the run {run}"),
    "run_scenes_gone": Message("{path}: its scenes {scenes} are not among its inputs any more"),
    # the journal, lock and output files (run/journal, run/atomic, run/results)
    "journal_other_options": Message(
        "{path}: an interrupted run with other options left {journal} (changed: {changed})",
        "run the same command to continue it, or use {option} to start over",
    ),
    "journal_unwritable": Message("{path}: cannot write the run journal ({detail})"),
    "journal_unreadable": Message(
        "{path}: the journal of an earlier run cannot be read ({detail})", "use {option} to start over"
    ),
    "journal_record_changed": Message(
        "{path}: the journal's record of scene {scene} changed during the run and fails its check",
        "run the same command again to map that scene again",
    ),
    "journal_replaced": Message(
        "{path}: the run journal was replaced while it was opened; refusing to use it"
    ),
    "journal_undeletable": Message(
        "{path}: cannot delete the journal of an earlier run ({reason})",
        "delete it yourself, or choose another output",
    ),
    "record_undecodable": Message("a journal record does not decode ({detail})"),
    "record_foreign": Message("a journal record is not a scene record of this version"),
    "record_short": Message("a journal record is cut short"),
    "record_trailing": Message("a journal record has bytes left over"),
    "unsafe_file": Message(
        "{path}: the {what} {problem}; refusing to use it", "remove it, or choose another output"
    ),
    "file_unopenable": Message("{path}: cannot open the {what}: {reason}"),
    "folder_missing": Message("{path}: cannot write, folder {folder} does not exist"),
    "writer_no_file": Message("{path}: the writer produced no file"),
    "output_unreplaceable": Message("{path}: cannot replace the output: {reason}"),
    "output_busy": Message(
        "{path}: another run is writing this output ({holder})", "wait for it, or choose another output"
    ),
    "workdir_missing": Message("{folder}: the work folder does not exist"),
    "workdir_unwritable": Message("{folder}: cannot create a work folder: {reason}"),
    "layer_unwritable": Message("{path}: cannot write layer {layer!r}: {detail}"),
    # Ray
    "ray_missing": Message(
        "running on Ray needs Ray in the Python that runs the job",
        "install it there (pip install 'ray[client]'), or run without {opt_executor} ray",
    ),
    "ray_unreachable": Message(
        "cannot join the Ray cluster {address}: {reason}", "check the address and that the cluster is running"
    ),
    "ray_gpus": Message(
        "{option} is {per} but the Ray cluster has {gpus} GPUs",
        "lower {option}, or send the run to a cluster with GPUs",
    ),
}
