"""Result layers: load the GeoPackage the worker wrote, style it, group it (main thread only).

Also ``write_gpkg``: the copy of a project layer the worker reads (area of interest, labels).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsLayerTreeGroup,
    QgsProject,
    QgsProviderRegistry,
    QgsRendererCategory,
    QgsSingleSymbolRenderer,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

WATER_LAYER = "water"
CHIPS_LAYER = "chips"
REVIEW_LAYER = "review"
EXPORT_GPKG = "chips.gpkg"


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


def write_gpkg(layer: QgsVectorLayer, path: str | Path, layer_name: str, selected_only: bool) -> str | None:
    """Copy ``layer`` (or its selection) to the GeoPackage ``path``; the error message, None when done."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = layer_name
    options.onlySelectedFeatures = selected_only
    result = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsProject.instance().transformContext(), options
    )
    return None if result[0] == QgsVectorFileWriter.NoError else result[1]


def _fill(**props: str) -> QgsFillSymbol:
    """A simple fill symbol; widths are in millimetres."""
    return QgsFillSymbol.createSimple({**props, "outline_width_unit": "MM"})


def style_water(layer: QgsVectorLayer) -> None:
    """Blue, semi-transparent fill with a darker outline: the raster stays readable underneath."""
    symbol = _fill(color="30,120,230,110", outline_color="10,60,160,255", outline_width="0.4")
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def style_chips(layer: QgsVectorLayer) -> None:
    """Chip footprints as thin dashed outlines (an audit layer, hidden by default)."""
    symbol = _fill(
        color="0,0,0,0",
        style="no",
        outline_color="230,120,20,255",
        outline_style="dash",
        outline_width="0.26",
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


# Chip outlines of an export, by split: what trains, what validates, what was left out.
_SPLIT_COLOURS = {
    "train": ("26,127,55,255", "solid"),
    "valid": ("207,34,46,255", "solid"),
    "excluded": ("130,130,130,255", "dash"),
    "skipped": ("130,130,130,255", "dot"),
}


def style_export_chips(layer: QgsVectorLayer) -> None:
    """Chips outlined by split (train green, valid red, left-out grey), so the split is visible."""
    categories = []
    for value, (colour, style) in _SPLIT_COLOURS.items():
        symbol = _fill(
            style="no",
            outline_color=colour,
            outline_style=style,
            outline_width="0.4" if value in ("train", "valid") else "0.26",
        )
        categories.append(QgsRendererCategory(value, symbol, value))
    field = "split" if "split" in layer.fields().names() else None
    if field is None:
        style_chips(layer)
        return
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))


def style_review(layer: QgsVectorLayer) -> None:
    """What the 16 mask tokens decode back to: a teal fill to compare with the labels."""
    symbol = _fill(color="0,170,170,90", outline_color="0,110,110,255", outline_width="0.26")
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))


def add_export_layers(
    out_dir: str | Path, group_name: str, project: QgsProject | None = None
) -> tuple[QgsLayerTreeGroup, list[QgsVectorLayer]]:
    """Add ``chips`` and ``review`` of ``OUT_DIR/chips.gpkg`` (a training-data export) in a new group."""
    project = project or QgsProject.instance()
    gpkg = Path(out_dir) / EXPORT_GPKG
    if not gpkg.is_file():
        raise ValueError(f"{gpkg}: the export wrote no chips.gpkg")
    names = gpkg_layer_names(gpkg)
    layers = []
    for name, style in ((REVIEW_LAYER, style_review), (CHIPS_LAYER, style_export_chips)):
        layer = open_layer(gpkg, name) if name in names else None
        if layer is None and name == REVIEW_LAYER:
            continue  # no water decoded back (e.g. every chip dry): the chips still tell the story
        if layer is None:
            raise ValueError(f"{gpkg}: no readable layer '{name}' (layers: {', '.join(names) or 'none'})")
        style(layer)
        layers.append(layer)
    group = project.layerTreeRoot().insertGroup(0, group_name)
    for layer in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    return group, layers
