"""Result layers: load the GeoPackage the worker wrote, style it, group it (main thread only)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsFillSymbol,
    QgsLayerTreeGroup,
    QgsProject,
    QgsProviderRegistry,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)

WATER_LAYER = "water"
CHIPS_LAYER = "chips"


def gpkg_layer_names(path: str | Path) -> list[str]:
    """Names of the vector layers in a GeoPackage (empty when it cannot be read)."""
    try:
        details = QgsProviderRegistry.instance().querySublayers(str(path))
    except AttributeError:  # pragma: no cover - QGIS < 3.22
        return []
    return [d.name() for d in details if d.name()]


def open_layer(path: str | Path, layer_name: str, display_name: str | None = None) -> QgsVectorLayer | None:
    layer = QgsVectorLayer(f"{path}|layername={layer_name}", display_name or layer_name, "ogr")
    return layer if layer.isValid() else None


def style_water(layer: QgsVectorLayer) -> None:
    """Blue, semi-transparent fill with a darker outline: the raster stays readable underneath."""
    symbol = QgsFillSymbol.createSimple(
        {
            "color": "30,120,230,110",
            "outline_color": "10,60,160,255",
            "outline_width": "0.4",
            "outline_width_unit": "MM",
        }
    )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def style_chips(layer: QgsVectorLayer) -> None:
    """Chip footprints as thin dashed outlines (an audit layer, hidden by default)."""
    symbol = QgsFillSymbol.createSimple(
        {
            "color": "0,0,0,0",
            "style": "no",
            "outline_color": "230,120,20,255",
            "outline_style": "dash",
            "outline_width": "0.26",
            "outline_width_unit": "MM",
        }
    )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))


def add_result_layers(
    gpkg: str | Path, group_name: str, project: QgsProject | None = None
) -> tuple[QgsLayerTreeGroup, list[QgsVectorLayer]]:
    """Add ``water`` (styled) and ``chips`` (hidden) from ``gpkg`` in a new top group ``group_name``."""
    project = project or QgsProject.instance()
    names = gpkg_layer_names(gpkg)
    water_name = WATER_LAYER if WATER_LAYER in names or not names else names[0]
    water = open_layer(gpkg, water_name, WATER_LAYER)
    if water is None:
        raise ValueError(f"{gpkg}: no readable layer '{water_name}' (layers: {', '.join(names) or 'none'})")
    root = project.layerTreeRoot()
    group = root.insertGroup(0, group_name)
    style_water(water)
    project.addMapLayer(water, False)
    group.addLayer(water)
    added = [water]
    if CHIPS_LAYER in names:
        chips = open_layer(gpkg, CHIPS_LAYER)
        if chips is not None:
            style_chips(chips)
            project.addMapLayer(chips, False)
            node = group.addLayer(chips)
            node.setItemVisibilityChecked(False)
            added.append(chips)
    return group, added
