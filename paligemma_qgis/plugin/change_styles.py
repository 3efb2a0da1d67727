"""Styles and grouping for the change and occurrence results (main thread, after Processing loads them).

Colours: persistent water blue, gained teal, lost orange (told apart with red-green colour
blindness too), unknown grey hatching, the compared area a dashed outline. Occurrence: the
JRC Global Surface Water ramp, pale pink at 1 % to blue at 100 %, 0 % transparent.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsLayerTreeGroup,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

# (fill colour, outline colour): the change classes and the occurrence classes
FILLS = {
    "persistent": ("30,90,200,170", "20,50,140,255"),
    "gained": ("0,190,160,190", "0,120,100,255"),
    "lost": ("240,120,20,190", "170,70,0,255"),
    "permanent": ("0,0,200,170", "0,0,130,255"),
    "seasonal": ("100,170,255,170", "40,110,210,255"),
    "rare": ("255,190,150,170", "210,120,80,255"),
}
RANK_PROPERTY = "paligemma_qgis/rank"
# Keeps post-processors alive until QGIS has used them (it holds no Python reference).
_POST_PROCESSORS: list[QgsProcessingLayerPostProcessorInterface] = []


def _fill(**props: str) -> QgsFillSymbol:
    return QgsFillSymbol.createSimple({**props, "outline_width_unit": "MM"})


def style_class_layer(layer: QgsVectorLayer, name: str) -> None:
    """One of gained / lost / persistent / unknown / observed / permanent / seasonal / rare."""
    if name in FILLS:
        fill, outline = FILLS[name]
        symbol = _fill(color=fill, outline_color=outline, outline_width="0.2")
    elif name == "unknown":
        symbol = _fill(
            color="110,110,110,255", style="b_diagonal", outline_color="90,90,90,255", outline_width="0.2"
        )
    else:  # observed: where the maps were compared / the occurrence is defined
        symbol = _fill(
            color="0,0,0,0",
            style="no",
            outline_color="80,80,80,255",
            outline_style="dash",
            outline_width="0.3",
        )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def _linear() -> object:
    """The interpolated ramp type, wherever this QGIS keeps it (3.22 on the class, 3.30+ on Qgis)."""
    method = getattr(Qgis, "ShaderInterpolationMethod", None)
    return method.Linear if method is not None else QgsColorRampShader.Type.Interpolated


def style_occurrence(layer: QgsRasterLayer) -> None:
    """Band 1 (occurrence %) with the JRC ramp; never-observed pixels are nodata (transparent)."""
    ramp = QgsColorRampShader(0.0, 100.0)
    ramp.setColorRampType(_linear())
    ramp.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(0.0, QColor(255, 255, 255, 0), "0 % (observed, never water)"),
            QgsColorRampShader.ColorRampItem(1.0, QColor(255, 204, 204), "1 %"),
            QgsColorRampShader.ColorRampItem(50.0, QColor(153, 153, 255), "50 %"),
            QgsColorRampShader.ColorRampItem(100.0, QColor(0, 0, 255), "100 %"),
        ]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(100.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def place_in_group(layer, project: QgsProject, group_name: str, rank: int, visible: bool = True) -> None:
    """Move ``layer``'s node into the group ``group_name`` (made beside it), ordered by ``rank``."""
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return
    parent = node.parent() if isinstance(node.parent(), QgsLayerTreeGroup) else root
    group = parent.findGroup(group_name)
    if group is None:
        group = parent.insertGroup(0, group_name)
    position = sum(1 for child in group.children() if int(child.customProperty(RANK_PROPERTY, 0)) < rank)
    clone = node.clone()
    clone.setCustomProperty(RANK_PROPERTY, rank)
    clone.setItemVisibilityChecked(visible)
    group.insertChildNode(position, clone)
    node.parent().removeChildNode(node)


class GroupedStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles a loaded result layer and files it in its group."""

    def __init__(self, style: Callable, group: str, rank: int, visible: bool = True) -> None:
        super().__init__()
        self.style, self.group, self.rank, self.visible = style, group, rank, visible

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API
        if layer is None or not layer.isValid():
            return
        self.style(layer)
        project = context.project() or QgsProject.instance()
        place_in_group(layer, project, self.group, self.rank, self.visible)


def load_as_group(
    context: QgsProcessingContext,
    output: str,
    group: str,
    layers: list[tuple[str, str, Callable, bool]],
    first_rank: int = 0,
) -> None:
    """Have Processing load ``layers`` (uri, name, style, visible) instead of ``output``, styled, in ``group``.

    Layers are ordered in the group by rank: ``first_rank`` for the first, upwards (lower is on top).

    Nothing happens when the user chose not to open the output (it is not in the load list).
    """
    pending = context.layersToLoadOnCompletion()
    if output not in pending:
        return
    details = pending.pop(output)
    for rank, (uri, name, style, visible) in enumerate(layers):
        # the output itself keeps Processing's entry (and its layer type); other layers get one each
        entry = details if uri == output else QgsProcessingContext.LayerDetails(name, details.project, name)
        entry.name = name
        entry.forceName = True
        styler = GroupedStyler(style, group, first_rank + rank, visible)
        _POST_PROCESSORS.append(styler)
        entry.setPostProcessor(styler)
        pending[uri] = entry
    context.setLayersToLoadOnCompletion(pending)
