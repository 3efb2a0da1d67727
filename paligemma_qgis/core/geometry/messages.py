"""Error codes raised in core/geometry, with their neutral words (see core.errors).

Templates hold facts as ``{params}``; options only as ``{option}`` (the error's field) or
``{opt_NAME}``, which each front end fills with its own name.
"""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {
    # the mosaic (mosaic, pixel_area)
    "crs_off_earth": Message("the raster centre ({x}, {y}) cannot be located on the Earth"),
    "mosaic_no_space": Message(
        "{folder}: cannot reserve {gb} GB for the mosaic: {reason}",
        "free space, map less with {opt_aoi}, or choose another work folder with {opt_workdir}",
    ),
    "mask_write_failed": Message("{path}: cannot write the mask GeoTIFF: {detail}"),
    # tracing in the background (trace_background)
    "vectorise_stopped": Message("the vectorising process stopped (exit code {exitcode})"),
    "vectorise_failed": Message("vectorising failed: {detail}"),
    # the polygons (vectorize, shapes)
    "out_crs_cannot_hold": Message(
        "{option} {crs} cannot hold the water polygons", "choose another or keep the raster's"
    ),
    "out_crs_elsewhere": Message(
        "{option} {crs} is meant for {aou} but the water polygons lie at {extent}",
        "choose another {option} or keep the raster's",
    ),
    "reproject_failed": Message("cannot reproject the water polygons from {src} to {dst}"),
    "layer_write_failed": Message("{path}: cannot write {kind} '{layer}': {detail}"),
    # the footprint of a single-scene output (footprints)
    "footprint_unknown": Message(
        "{path}: no 'scenes' or 'chips' layer and no raster: cannot tell where this map looked"
    ),
}
