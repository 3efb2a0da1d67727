"""Result layers: load the GeoPackage the worker wrote, style it, group it (main thread only).

Also ``LayerSnapshot``: the copy of a project layer the worker reads (area of interest,
labels), taken on the main thread and written on a worker thread (a big PostGIS or WFS
layer would otherwise freeze QGIS while the job is built).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsLayerTreeGroup,
    QgsProject,
    QgsProviderRegistry,
    QgsRendererCategory,
    QgsSingleSymbolRenderer,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
)

WATER_LAYER = "water"
DISSOLVED_LAYER = "water_dissolved"  # a region run with dissolve: water merged across scenes
SCENES_LAYER = "scenes"  # a region run: each scene's observed footprint, status and error
CHIPS_LAYER = "chips"
# Order of a segment result's layers in its group, top first.
RESULT_ORDER = (DISSOLVED_LAYER, WATER_LAYER, SCENES_LAYER, CHIPS_LAYER)
RESULT_PROPERTY = "paligemma_qgis/result_layer"  # custom property: which of RESULT_ORDER a layer is
REVIEW_LAYER = "review"
EXPORT_GPKG = "chips.gpkg"
# Job key of the LayerSnapshots a WorkerTask writes before the worker starts (never sent to it).
LAYER_COPIES = "layer_copies"


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


class LayerSnapshot:
    """A pending copy of a project layer (or its selection) to the GeoPackage layer ``path``/``layer_name``.

    Create it on the main thread: it takes a thread-safe feature source, the selected ids,
    fields, geometry type, CRS and transform context there. ``write`` reads no layer, so it
    may run on any thread (a QgsTask, a Processing algorithm).
    """

    def __init__(
        self,
        layer: QgsVectorLayer,
        path: str | Path,
        layer_name: str,
        selected_only: bool = False,
        what: str = "the layer",
    ) -> None:
        self.path = Path(path)
        self.layer_name = layer_name
        self.title = layer.name()
        self.what = what  # "the area of interest": said in the error message
        self._source = QgsVectorLayerFeatureSource(layer)
        self._fids = list(layer.selectedFeatureIds()) if selected_only else None
        self._fields = layer.fields()
        self._wkb_type = layer.wkbType()
        self._crs = layer.crs()
        self._context = QgsProject.instance().transformContext()

    def write(self, is_cancelled: Callable[[], bool] | None = None) -> str | None:
        """Write the copy; None when done, else the message (a partial file is removed).

        ``is_cancelled`` is asked before each feature; a cancelled copy says so and keeps no file.
        """
        is_cancelled = is_cancelled or (lambda: False)
        try:
            problem = self._copy(is_cancelled)
        except Exception as exc:  # a failed copy is a message for the user, not a traceback
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return None
        self.remove()
        return f"{self.title}: cannot copy {self.what} to {self.path} ({problem})"

    def _copy(self, is_cancelled: Callable[[], bool]) -> str | None:
        writer = QgsVectorFileWriter.create(
            str(self.path), self._fields, self._wkb_type, self._crs, self._context, self._options()
        )
        try:
            if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
                return writer.errorMessage() or "the GeoPackage cannot be created"
            request = QgsFeatureRequest()
            if self._fids is not None:
                request.setFilterFids(self._fids)
            for feature in self._source.getFeatures(request):
                if is_cancelled():
                    return "cancelled"
                if (
                    not writer.addFeature(feature)
                    or writer.hasError() != QgsVectorFileWriter.WriterError.NoError
                ):
                    return writer.errorMessage() or f"feature {feature.id()} cannot be written"
            return "cancelled" if is_cancelled() else None
        finally:
            del writer  # closes the GeoPackage (before a failed copy is removed)

    def _options(self) -> QgsVectorFileWriter.SaveVectorOptions:
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = self.layer_name
        options.fileEncoding = "UTF-8"
        names = {name.lower() for name in self._fields.names()}
        if "fid" in names:
            # A "fid" attribute would become the GeoPackage's primary key, which fails for a
            # text, null or repeated one: give the copy a key column of its own.
            key = next(f"fid_{i}" for i in range(1, len(names) + 2) if f"fid_{i}" not in names)
            options.layerOptions = [f"FID={key}"]
        return options

    def remove(self) -> None:
        """Delete the copy and SQLite's side files (a failed, cancelled or finished copy)."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)


def with_copies(job: dict, copies: list[LayerSnapshot]) -> dict:
    """``job`` plus the layer copies a WorkerTask writes before the worker starts."""
    return {**job, LAYER_COPIES: list(copies)} if copies else job


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


def style_scenes(layer: QgsVectorLayer) -> None:
    """Observed footprints as amber outlines (seen on imagery); a failed scene hatched red.

    A scene that failed before it was opened has no footprint: it is a row of the attribute
    table (with its error) and named in the run's message, not a shape on the map.
    """
    mapped = _fill(color="0,0,0,0", style="no", outline_color="255,190,0,255", outline_width="0.5")
    failed = _fill(
        color="207,34,46,255", style="b_diagonal", outline_color="207,34,46,255", outline_width="0.6"
    )
    if "status" not in layer.fields().names():
        layer.setRenderer(QgsSingleSymbolRenderer(mapped))
        return
    categories = [
        QgsRendererCategory("done", mapped, "mapped"),
        QgsRendererCategory("failed", failed, "failed"),
    ]
    layer.setRenderer(QgsCategorizedSymbolRenderer("status", categories))


def style_result_layer(layer: QgsVectorLayer, kind: str) -> None:
    """The style of one layer of a segment result, by its name in the GeoPackage."""
    layer.setCustomProperty(RESULT_PROPERTY, kind)
    if kind in (WATER_LAYER, DISSOLVED_LAYER):
        style_water(layer)
    elif kind == SCENES_LAYER:
        style_scenes(layer)
    else:
        style_chips(layer)


def shown(kind: str, kinds: set[str]) -> bool:
    """Chips are an audit layer (hidden); per-scene water hides under the dissolved water."""
    return kind != CHIPS_LAYER and not (kind == WATER_LAYER and DISSOLVED_LAYER in kinds)


def layers_of_file(path: str | Path, project: QgsProject) -> list:
    """The project's layers read from the file ``path`` (any of its layers), in layer-tree order."""
    target = Path(path).resolve()
    found = []
    for node in project.layerTreeRoot().findLayers():
        layer = node.layer()
        if layer is None:
            continue
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        source = parts.get("path") or ""
        if source and Path(source).resolve() == target:
            found.append(layer)
    return found


def _place_for(gpkg: str | Path, group_name: str, project: QgsProject) -> tuple[QgsLayerTreeGroup, int]:
    """Where the result goes: where an earlier result from the same file sat (its layers leave
    the project: Overwrite replaces them), else a new group ``group_name`` at the top."""
    root = project.layerTreeRoot()
    old = layers_of_file(gpkg, project)
    if old:
        node = root.findLayer(old[0].id())
        parent = node.parent() if node is not None else None
        group = parent if isinstance(parent, QgsLayerTreeGroup) else root
        index = group.children().index(node) if node in group.children() else 0
        project.removeMapLayers([layer.id() for layer in old])
        if group is not root:
            if not group.children():  # it held the old result alone: named by what it holds now
                group.setName(group_name)
            return group, min(index, len(group.children()))
        return root.insertGroup(index, group_name), 0
    return root.insertGroup(0, group_name), 0


def add_result_layers(
    gpkg: str | Path, group_name: str, project: QgsProject | None = None, region: bool = False
) -> tuple[QgsLayerTreeGroup, list[QgsVectorLayer]]:
    """Add ``water`` (styled) and ``chips`` (hidden) from ``gpkg`` in a top group ``group_name``.

    ``region`` (a run over several rasters): also ``scenes`` (observed footprints, failed
    scenes hatched red) and, when the run dissolved, ``water_dissolved`` above ``water`` (which
    is then hidden: both drawn would double the overlaps). Returns water first.
    A re-run into the same file (Overwrite) replaces the old result's layers where they are,
    in their group, instead of adding a second group of the same name.
    """
    project = project or QgsProject.instance()
    names = gpkg_layer_names(gpkg)
    water_name = WATER_LAYER if WATER_LAYER in names or not names else names[0]
    water = open_layer(gpkg, water_name, WATER_LAYER)
    if water is None:
        raise ValueError(f"{gpkg}: no readable layer '{water_name}' (layers: {', '.join(names) or 'none'})")
    wanted = [DISSOLVED_LAYER, SCENES_LAYER, CHIPS_LAYER] if region else [CHIPS_LAYER]
    layers = {WATER_LAYER: water}
    for name in wanted:
        layer = open_layer(gpkg, name) if name in names else None
        if layer is not None:
            layers[name] = layer
    group, index = _place_for(gpkg, group_name, project)
    for offset, kind in enumerate(k for k in RESULT_ORDER if k in layers):
        layer = layers[kind]
        style_result_layer(layer, kind)
        project.addMapLayer(layer, False)
        node = group.insertLayer(index + offset, layer)
        node.setItemVisibilityChecked(shown(kind, set(layers)))
    return group, [water, *(layers[k] for k in RESULT_ORDER if k in layers and k != WATER_LAYER)]


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
    group, index = _place_for(gpkg, group_name, project)
    for offset, layer in enumerate(layers):
        project.addMapLayer(layer, False)
        group.insertLayer(index + offset, layer)
    return group, layers


def unsure_scenes(gpkg: str | Path) -> list[tuple[str, str]]:
    """(scene, why) of the scenes whose map the water index doubts (``scenes.unsure``), in order."""
    layer = open_layer(gpkg, SCENES_LAYER)
    if layer is None or "unsure" not in layer.fields().names():
        return []
    request = QgsFeatureRequest().setFilterExpression('"unsure" IS NOT NULL AND "status" = \'done\'')
    found = [(str(f["scene"]), str(f["unsure"])) for f in layer.getFeatures(request)]
    del layer
    return found
