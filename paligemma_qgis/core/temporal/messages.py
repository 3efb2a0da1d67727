"""Error codes raised in core/temporal, with their neutral words (see core.errors)."""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {
    # reading water maps (temporal/water_maps)
    "water_map_not_found": Message("{path}: water map not found"),
    "water_map_unreadable": Message("{path}: cannot read as a vector file ({detail})"),
    "water_map_layer_unreadable": Message("{path}: cannot read layer {layer!r} ({what}): {detail}"),
    "water_map_no_water": Message(
        "{path}: no '{layer}' layer (layers: {layers})", "give a GeoPackage written by segment"
    ),
    "water_map_no_crs": Message("{path}: the water layer has no CRS"),
    "water_map_columns": Message("{path}: layer '{layer}' has no {columns} column{why}"),
    "water_map_no_date": Message("{path}: no scene dated {date} (scene dates: {known})"),
    "water_map_date": Message("{what}: {value} is not an ISO 8601 date (YYYY-MM-DD)"),
    "water_map_reproject": Message("cannot reproject the water polygons from {source_crs} to {target_crs}"),
    "water_map_reference_not_found": Message("{path}: reference water file not found"),
    "water_map_layer_missing": Message("{path}: no layer {layer!r} (layers: {layers})"),
    "water_map_reference_no_crs": Message("{path}: reference layer {layer!r} has no CRS"),
    "water_map_reference_no_polygons": Message("{path}: reference layer {layer!r} holds no polygons"),
    "temporal_output_folder": Message("{path}: cannot write, folder {folder} does not exist"),
    # change
    "change_after_missing": Message("change needs {opt_after}, the later water map or raster"),
    "change_needs_before": Message(
        "change needs {opt_before}, or {opt_reference} (known water) in its place"
    ),
    "change_files_missing": Message(
        "change needs {opt_before} {opt_after} {opt_output} (or {opt_after} {opt_output} with {opt_reference})"
    ),
    "change_file_count": Message(
        "change takes 2 or 3 files, got {count}: {opt_before} {opt_after} {opt_output}"
    ),
    "change_input_not_found": Message("{path}: {what} file not found"),
    "change_input_plain_vector": Message(
        "{path}: {what} must be a GeoPackage written by segment, or a raster"
    ),
    "change_output_is_input": Message("{path}: output would overwrite the {what} input"),
    "change_map_empty": Message("{path}: no scene with a footprint to compare (all failed or empty)"),
    # occurrence
    "occurrence_inputs_missing": Message("occurrence needs at least one water map or folder of them"),
    "occurrence_output_not_tif": Message("{path}: the output must be a GeoTIFF (.tif)"),
    "occurrence_classes_not_gpkg": Message("{path}: the classes output must be a GeoPackage (.gpkg)"),
    "occurrence_classes_is_input": Message("{path}: the classes output would overwrite an input"),
    "occurrence_thresholds": Message(
        "class thresholds must satisfy 0 < rare <= permanent <= 100, got rare {rare}, permanent {permanent}"
    ),
    "occurrence_folder_empty": Message("{path}: folder holds no GeoPackage (*.gpkg)"),
    "occurrence_no_footprint": Message("{path}: scene {scene} has no footprint"),
    "occurrence_no_observation": Message(
        "no observation left", "check {opt_start} / {opt_end} against the scene dates"
    ),
    "occurrence_nothing_observed": Message("no observation has an observed footprint: nothing to count"),
    "occurrence_no_pixel_size": Message(
        "cannot tell the pixel size of the inputs (no chips layer)", "pass {opt_resolution}"
    ),
    "occurrence_grid_too_big": Message(
        "the occurrence grid would be {width} x {height} pixels of {rx} x {ry}",
        "pass a larger {opt_resolution} (in units of the output CRS)",
    ),
}
