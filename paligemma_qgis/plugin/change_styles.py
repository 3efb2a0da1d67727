"""Styles for the change and occurrence results (main thread, after Processing loads them; run_groups
files them in their run's group).

Colours: persistent water blue, gained teal, lost orange (told apart with red-green colour
blindness too), unknown grey hatching, the compared area a dashed outline. Occurrence: the
JRC Global Surface Water ramp, pale pink at 1 % to blue at 100 %, 0 % transparent.
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsFillSymbol,
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
