"""Processing parameters of a STAC search source and of the cloud mask, for *Map water in many rasters*.

A STAC search is the scenes of a STAC API (Earth Search, Planetary Computer...) instead of
INPUTS / FOLDER: its URL, a collection, an extent (Processing's extent widget offers the map
canvas), a date window and the most cloud. The worker searches with pystac-client
(core.inputs.stac_search) and maps the items found, cloud-masked, in one resumable run. Only
Processing parameters: the values become the job's flat options (core.specs.SearchSpec).
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication

STAC_API = "STAC_API"
STAC_COLLECTION = "STAC_COLLECTION"
STAC_EXTENT = "STAC_EXTENT"
STAC_START = "STAC_START"
STAC_END = "STAC_END"
STAC_MAX_CLOUD = "STAC_MAX_CLOUD"
STAC_LIMIT = "STAC_LIMIT"
STAC_SIGN = "STAC_SIGN"
CLOUD_MASK = "CLOUD_MASK"
# (value, label): core.rules.CloudMaskMode, in the order offered.
CLOUD_MASKS = [
    ("auto", "Auto: the mask the data has (a STAC item's SCL or QA_PIXEL, a band named so)"),
    ("none", "None: clouds count as observed"),
    ("scl", "SCL (Sentinel-2 L2A scene classification)"),
    ("qa_pixel", "QA_PIXEL (Landsat Collection 2)"),
    ("s2cloudless", "s2cloudless (Sentinel-2 L1C; needs the s2cloudless package in the worker)"),
]
HELP = (
    "STAC search, instead of INPUTS / FOLDER: STAC_API (e.g. https://earth-search.aws.element84.com/v1), "
    "STAC_COLLECTION (e.g. sentinel-2-l2a), STAC_EXTENT (the map canvas extent, or any extent: also the "
    "area mapped), STAC_START / STAC_END (dates), STAC_MAX_CLOUD (the items' cloud cover, percent), "
    "STAC_LIMIT (most items) and STAC_SIGN (Planetary Computer's URLs). The items found are kept beside "
    "the output until it is written, so an interrupted run continues with the same items.\n\n"
    "CLOUD_MASK: masked pixels are not observed: left out of each scene's footprint (so 'change' calls "
    "water under them unknown and 'occurrence' does not count them), of the threshold statistics and of "
    "each chip's valid share, and black in the model's chips. Auto masks SCL classes no data, saturated, "
    "cloud shadow, cloud medium/high, thin cirrus and snow, or QA_PIXEL's fill, dilated cloud, cirrus, "
    "cloud, cloud shadow and snow bits; never haze a mask calls clear, nor terrain shadow. The 'scenes' "
    "layer gives each scene's cloud_pct."
)


def _tr(text: str) -> str:
    return QCoreApplication.translate("PaliGemmaWater", text)


def search_parameters() -> list[QgsProcessingParameterDefinition]:
    """The STAC search parameters (all optional: without STAC_API the inputs are INPUTS / FOLDER)."""
    params: list[QgsProcessingParameterDefinition] = [
        QgsProcessingParameterString(
            STAC_API, _tr("STAC search: API URL (instead of input rasters)"), optional=True
        ),
        QgsProcessingParameterString(STAC_COLLECTION, _tr("STAC search: collection"), optional=True),
        QgsProcessingParameterExtent(
            STAC_EXTENT, _tr("STAC search: extent (also the area mapped)"), optional=True
        ),
        QgsProcessingParameterDateTime(
            STAC_START,
            _tr("STAC search: first date"),
            QgsProcessingParameterDateTime.Type.Date,
            optional=True,
        ),
        QgsProcessingParameterDateTime(
            STAC_END, _tr("STAC search: last date"), QgsProcessingParameterDateTime.Type.Date, optional=True
        ),
        QgsProcessingParameterNumber(
            STAC_MAX_CLOUD,
            _tr("STAC search: maximum cloud cover (%)"),
            QgsProcessingParameterNumber.Type.Double,
            None,
            True,
            0.0,
            100.0,
        ),
        QgsProcessingParameterNumber(
            STAC_LIMIT,
            _tr("STAC search: most items"),
            QgsProcessingParameterNumber.Type.Integer,
            None,
            True,
            1,
        ),
        QgsProcessingParameterBoolean(
            STAC_SIGN, _tr("STAC search: sign the asset URLs (Planetary Computer)"), defaultValue=False
        ),
    ]
    return params


def cloud_mask_parameter() -> QgsProcessingParameterEnum:
    return QgsProcessingParameterEnum(
        CLOUD_MASK,
        _tr("Cloud mask (clouds are not observed)"),
        options=[label for _, label in CLOUD_MASKS],
        defaultValue=0,
    )


def _date(alg, parameters: dict, name: str, context: QgsProcessingContext) -> str:
    if parameters.get(name) in (None, ""):
        return ".."
    value = alg.parameterAsDateTime(parameters, name, context)
    return value.date().toString("yyyy-MM-dd") if value.isValid() else ".."


def search_options(alg, parameters: dict, context: QgsProcessingContext) -> dict | None:
    """The job's search options (core.specs.SearchSpec flat names), or None without STAC_API.

    A missing part (collection, extent, dates) is left for the worker to say, in one line.
    """
    url = (alg.parameterAsString(parameters, STAC_API, context) or "").strip()
    if not url:
        return None
    options: dict = {"stac_api": url}
    collection = (alg.parameterAsString(parameters, STAC_COLLECTION, context) or "").strip()
    if collection:
        options["collection"] = [c.strip() for c in collection.split(",") if c.strip()]
    if parameters.get(STAC_EXTENT) not in (None, ""):
        wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
        r = alg.parameterAsExtent(parameters, STAC_EXTENT, context, wgs84)
        if not r.isNull() and not r.isEmpty():
            options["bbox"] = [r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum()]
    start, end = _date(alg, parameters, STAC_START, context), _date(alg, parameters, STAC_END, context)
    if (start, end) != ("..", ".."):
        options["datetime"] = f"{start}/{end}"
    if parameters.get(STAC_MAX_CLOUD) not in (None, ""):
        options["max_cloud"] = alg.parameterAsDouble(parameters, STAC_MAX_CLOUD, context)
    if parameters.get(STAC_LIMIT) not in (None, ""):
        options["limit"] = alg.parameterAsInt(parameters, STAC_LIMIT, context)
    if alg.parameterAsBool(parameters, STAC_SIGN, context):
        options["sign"] = "planetary-computer"
    return options


def cloud_mask_option(alg, parameters: dict, context: QgsProcessingContext) -> str | None:
    """CLOUD_MASK as the job's cloud_mask (None: the default)."""
    value = CLOUD_MASKS[alg.parameterAsEnum(parameters, CLOUD_MASK, context)][0]
    return None if value == "auto" else value
