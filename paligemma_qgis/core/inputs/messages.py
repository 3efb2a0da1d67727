"""Error codes raised in core/inputs, with their neutral words (see core.errors)."""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {}

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
