"""PaliGemma water mapping: a QGIS plugin over a QGIS-free core library.

Importing the package must stay cheap: QGIS imports it at start-up, so nothing heavy
(torch, transformers, rasterio) is imported here.
"""

__version__ = "0.1.0"


def classFactory(iface):  # noqa: N802 - name required by QGIS
    """QGIS entry point."""
    from .plugin.plugin import PaliGemmaPlugin

    return PaliGemmaPlugin(iface)
