"""Error codes raised in core/inputs, with their neutral words (see core.errors).

Templates hold facts as ``{params}`` (the file, what it is to the user, the library's reason);
options only as ``{option}`` (the error's field) or ``{opt_NAME}``, which each front end fills
with its own name. Remedies may name a GDAL command (``gdalwarp``), never one of ours.
"""

from __future__ import annotations

from ..errors import Message

_CORRUPT = "({detail}); the {what} is truncated or corrupt"

MESSAGES: dict[str, Message] = {
    # any input file (files.py): ``what`` is what the file is to the user ("truth mask")
    "file_not_found": Message("{path}: {what} not found"),
    "file_is_folder": Message("{path}: {what} is a folder, not a file"),
    "file_permission": Message("{path}: cannot read {what} (permission denied)"),
    "file_unreadable": Message("{path}: cannot read {what} ({detail})"),
    "read_failed": Message("{path}: read failed in {window} " + _CORRUPT),
    "read_failed_while": Message("{path}: read failed while {during} " + _CORRUPT),
    "read_failed_in_while": Message("{path}: read failed in {window} while {during} " + _CORRUPT),
    "image_too_large": Message(
        "{path}: {what} is {size}, over the {limit}-megapixel safety limit for images "
        "(a decompression bomb guard)",
        "pass {opt_allow_large_images} if you trust the file",
    ),
    "raster_is_folder": Message("{path}: {what} is a folder, not a raster GDAL can read"),
    "raster_unopenable": Message("{path}: cannot open as a {what} ({detail})"),
    "vectors_unreadable": Message("{path}: cannot read {what} as vectors ({detail})"),
    "vectors_no_crs": Message("{path}: {what} have no CRS (coordinate reference system)", "assign one first"),
    "coordinates_outside_crs": Message(
        "{path}: the coordinates of the {what} do not fit its CRS {crs} (out of range after reprojection)",
        "are they really in that CRS? GeoJSON is always longitude/latitude",
    ),
    "text_not_utf8": Message(
        "{path}: {what} is not UTF-8 text (byte {byte}: {reason})", "is it the right file?"
    ),
    "jsonl_unreadable": Message("{path}: cannot read ({detail})"),
    "jsonl_not_json": Message("{path}: line {line} is not JSON ({detail})"),
    "jsonl_missing_keys": Message("{path}: line {line} needs the key(s) {keys}"),
    "npz_unreadable": Message("{path}: not a readable .npz file (truncated or corrupt download?): {detail}"),
    # ``hint``: the caller's own words on what to do (load_npz(hint=...))
    "npz_unreadable_hint": Message(
        "{path}: not a readable .npz file (truncated or corrupt download?): {detail}. {hint}"
    ),
    # the inputs of a run (scenes.py)
    "input_not_found": Message("{path}: input not found"),
    "glob_no_match": Message("{pattern}: no file matches this pattern"),
    "folder_no_raster": Message("{path}: folder holds no raster ({suffixes}, ...)"),
    "folder_rasters_deeper": Message(
        "{path}: the folder's rasters are in its subfolders ({count}), which are not read",
        "add {opt_recursive} to map them all, or give {pattern} (quoted)",
    ),
    "input_list_loop": Message("{path}: the list of inputs includes itself"),
    "input_list_unreadable": Message("{path}: cannot read the list of inputs ({detail})"),
    "input_list_empty": Message("{path}: the list of inputs is empty"),
    # a raster and its bands (raster.py, band_choice.py)
    "raster_gcps_only": Message(
        "{path}: raster is georeferenced by ground control points only",
        "warp it to a map grid first, e.g. gdalwarp -r bilinear in.tif out.tif",
    ),
    "raster_no_crs": Message(
        "{path}: raster has no CRS (coordinate reference system)",
        "assign one first, e.g. gdal_edit.py -a_srs EPSG:xxxx",
    ),
    "raster_no_bands": Message("{path}: raster has no bands"),
    "raster_only_alpha": Message("{path}: raster has no band with data, only an alpha band ({band})"),
    "band_list_bad": Message("{path}: bad band list {value}", "expected 1-based numbers like 3,2,1"),
    "band_list_count": Message("{path}: {option} needs 1 (grey) or 3 (R,G,B) band numbers, got {value}"),
    # also raised by model/water_index for the roles it reads (located at the raster by the planner)
    "band_out_of_range": Message(
        "{role} band {band} does not exist (the raster has {count} bands)",
        "choose a band from 1 to {count} for {option}",
    ),
    "preset_unknown": Message("{path}: unknown preset {value}", "choose one of {choices}"),
    "preset_mismatch": Message(
        "{path}: preset {preset!r} expects {counts} bands but the raster has {count}",
        "use {opt_bands} and {opt_green}/{opt_nir}/{opt_swir} instead",
    ),
    "preset_rgb_missing": Message(
        "{path}: preset {preset!r} expects bands {rgb} but the raster has {count}",
        "use {opt_bands} and {opt_green}/{opt_nir}/{opt_swir} instead",
    ),
    "resolution_rotated": Message("{path}: {option} is not supported for rotated rasters"),
    "resolution_not_positive": Message("{path}: {option} must be positive, got {value}"),
    # a failed raster read (``failure``: the read_failed* error), and the way past it
    "raster_read_failed": Message(
        "{failure_text}", "{opt_on_read_error} skip maps unreadable blocks as nodata"
    ),
    # the area of interest (grid.py)
    "aoi_unsupported": Message("unsupported area of interest: {value}"),
    "aoi_empty": Message("{aoi}: area of interest is empty"),
    "aoi_no_features": Message("{path}: area of interest has no features"),
    "aoi_no_crs": Message("{path}: area of interest has no CRS"),
}


# STAC documents, STAC API search and cloud masks (inputs/stac, stac_search, cloud_mask)
MESSAGES.update(
    {
        "stac_not_json": Message("{path}: cannot read as JSON ({detail})"),
        "stac_not_stac": Message(
            "{path}: not a STAC Item, ItemCollection or Catalog (no 'assets'; a raster list is a .txt file)"
        ),
        "stac_no_items": Message("{path}: the collection holds no STAC item with assets"),
        "stac_bad_item": Message("{path}: not a STAC item pystac can read ({detail})"),
        "stac_catalog_unreadable": Message("{path}: cannot read the STAC catalog ({detail})"),
        "stac_band_missing": Message(
            "{path}: no asset holds the band {bands}{available}", "choose others with {opt_stac_bands}"
        ),
        "stac_asset_unreadable": Message("{path}: cannot open asset {asset} ({detail})"),
        "stac_asset_band": Message("{path}: asset {asset} has no band {band}"),
        "stac_crs_mixed": Message("{path}: the chosen band assets are not in one CRS"),
        "stac_grid_rotated": Message("{path}: asset grids must be north-up and unrotated"),
        "search_needs": Message(
            "a STAC search needs {needs}",
            "give {opt_stac_api} with {opt_collection}, {opt_datetime} and {opt_bbox} or {opt_aoi}",
        ),
        "search_without_api": Message(
            "{option} is a STAC search option, but no STAC API is given", "give {opt_stac_api} too"
        ),
        "search_and_inputs": Message(
            "input rasters and a STAC search were both given",
            "map either the inputs or what the search finds",
        ),
        "search_bbox": Message(
            "{option} needs west,south,east,north in degrees (-180..180, -90..90, south < north), got {value}"
        ),
        "search_datetime": Message(
            "{option} needs a date or a range START/END of ISO dates ('..' for an open end), got {value}"
        ),
        "search_failed": Message(
            "{url}: the STAC search failed ({detail})", "check the URL and the collection"
        ),
        "search_found_nothing": Message(
            "{url}: no item of {collection} matches the search ({what})",
            "widen the dates, the area or the maximum cloud cover",
        ),
        "search_sign_unavailable": Message(
            "{option} {value} needs the planetary-computer package, which is not installed",
            "install it in the worker's Python: python -m pip install planetary-computer",
        ),
        "search_sign_failed": Message("{url}: signing the item URLs failed ({detail})"),
        "search_items_unreadable": Message(
            "{path}: the items of the interrupted search cannot be read ({detail})",
            "add {opt_restart} to start over",
        ),
        "cloud_mask_missing": Message(
            "{path}: no {kind} cloud mask found (no STAC asset, no band described {kind})",
            "use {option} auto or none, or a mask raster",
        ),
        "cloud_mask_unreadable": Message("{path}: cannot read the cloud mask {mask} ({detail})"),
        "cloud_mask_classes": Message(
            "{option} {value} means nothing with {opt_cloud_mask} {kind}: it chooses SCL classes, QA_PIXEL "
            "bits or a mask raster's values"
        ),
        "s2cloudless_unavailable": Message(
            "{option} s2cloudless needs the s2cloudless package, which is not installed",
            "install it in the worker's Python: python -m pip install s2cloudless",
        ),
        "s2cloudless_bands": Message(
            "{path}: s2cloudless needs the ten Sentinel-2 L1C bands B01, B02, B04, B05, B08, B8A, B09, B10, "
            "B11 and B12 ({found})",
            "give a 13-band L1C raster with band names, the sentinel2 preset, or an L1C STAC item",
        ),
    }
)
