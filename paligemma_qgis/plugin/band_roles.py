"""Which band is which, asked before a run when neither the raster nor the dialog says it.

A 4-band aerial tile without band descriptions could be R,G,B,NIR (NAIP) or SWIR,NIR,R,G
(a Landsat export): guessing wrong maps fields as water. The engines' needs (green + NIR or
SWIR for the water index, R,G,B for PaliGemma) are checked with the core's own rules
(core.inputs.bands: descriptions first, then the preset); when they are not met the dialog shows
the bands with their names and statistics and lets the user pick, or pick a sensor preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsRasterBandStats, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.inputs.bands import PRESETS as CORE_PRESETS
from ..core.inputs.bands import roles_from_descriptions
from .options import PRESETS, gdal_path
from .raster_probe import band_samples, raster_facts

ROLE_LABELS = {"red": "Red", "green": "Green", "blue": "Blue", "nir": "NIR (near infrared)", "swir": "SWIR"}
STATS_SAMPLE = 250_000  # pixels read for the statistics: enough to tell bands apart, quick on any raster


@dataclass(frozen=True)
class BandInfo:
    number: int
    name: str  # QGIS's band name, "Band 4" or "Band 04: B8"
    description: str
    colour: str
    minimum: float | None
    mean: float | None
    maximum: float | None


def band_descriptions(layer: QgsRasterLayer) -> list[str]:
    """The file's band descriptions ('' where a band has none), from QGIS's band names."""
    names = [layer.bandName(i) for i in range(1, layer.bandCount() + 1)]
    return [name.split(": ", 1)[1] if ": " in name else "" for name in names]


BandSource = QgsRasterLayer | str  # a project layer, or a raster file that is not one


def source_name(source: BandSource) -> str:
    return source.name() if isinstance(source, QgsRasterLayer) else Path(source).stem


def band_infos(source: BandSource) -> list[BandInfo]:
    """Name, description, colour interpretation and sampled min/mean/max of every band.

    The statistics come from a decimated read of the file with GDAL's side files off
    (raster_probe): QGIS's own statistics would be kept in a .aux.xml beside the user's raster.
    """
    layer = source if isinstance(source, QgsRasterLayer) else None
    path = gdal_path(layer) if layer is not None else source
    facts = raster_facts(path) if path else None
    samples = band_samples(path) if facts is not None else []
    if layer is not None:
        descriptions = band_descriptions(layer)
        names = [layer.bandName(i) for i in range(1, layer.bandCount() + 1)]
        colours = [layer.dataProvider().colorInterpretationName(i) for i in range(1, len(names) + 1)]
    elif facts is not None:
        descriptions = list(facts.descriptions)
        names = [f"Band {i}" + (f": {d}" if d else "") for i, d in enumerate(descriptions, start=1)]
        colours = [""] * len(names)
    else:
        return []
    if layer is not None and not samples:  # not a GDAL file: the provider's own statistics
        samples = [_provider_stats(layer, number) for number in range(1, len(names) + 1)]
    infos = []
    for number, description in enumerate(descriptions, start=1):
        values = samples[number - 1] if number <= len(samples) and samples[number - 1] else (None, None, None)
        infos.append(BandInfo(number, names[number - 1], description, colours[number - 1], *values))
    return infos


def _provider_stats(layer: QgsRasterLayer, number: int) -> tuple[float, float, float] | None:
    wanted = QgsRasterBandStats.Stats.Min | QgsRasterBandStats.Stats.Max | QgsRasterBandStats.Stats.Mean
    try:
        stats = layer.dataProvider().bandStatistics(number, wanted, QgsRectangle(), STATS_SAMPLE)
    except Exception:  # a provider that cannot compute them: the names still help
        return None
    return stats.minimumValue, stats.mean, stats.maximumValue


def roles_needed(
    engine: str,
    band_count: int,
    descriptions: list[str],
    preset: str | None,
    bands: str | None,
    index_bands: dict[str, int],
) -> list[str]:
    """The roles to ask for ([] when the engine's needs are known).

    ``engine``: "water-index" (green + NIR or SWIR) or "rgb" (PaliGemma and the export's
    chips: R,G,B, asked only for 4 bands or more; 1-3 bands are grey or RGB).
    ``index_bands``: the green/nir/swir the dialog already sets (0: automatic).
    """
    if preset or band_count < 2:
        return []
    described = roles_from_descriptions(descriptions, None)
    if engine == "water-index":
        if index_bands.get("nir") or index_bands.get("swir") or "nir" in described or "swir" in described:
            return []
        return ["green", "nir", "swir"]
    if bands or band_count <= 3 or all(r in described for r in ("red", "green", "blue")):
        return []
    return ["red", "green", "blue"]


class BandRolesDialog(QDialog):
    """Shows the bands (name, description, statistics) and asks which one has each role."""

    def __init__(self, layer: BandSource, roles: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("paligemmaBandRoles")
        self.setWindowTitle("PaliGemma Water — which band is which?")
        self.setMinimumWidth(560)
        self.roles = roles
        self.infos = band_infos(layer)
        layout = QVBoxLayout(self)
        needs = []
        if "red" in roles:
            needs.append("the red, green and blue bands")
        if "nir" in roles:
            needs.append("the green band and the NIR or SWIR band (water index)")
        what = "The run needs " + " and ".join(needs)
        intro = QLabel(
            f"{what}, and {source_name(layer)} does not say which of its {len(self.infos)} bands they are. "
            "Choose them below, or the sensor's band order. The statistics help: water is dark in "
            "NIR and SWIR, vegetation bright in NIR."
        )
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.PlainText)  # a file name is user data, never HTML
        layout.addWidget(intro)
        self.table = QTableWidget(len(self.infos), 6)
        self.table.setHorizontalHeaderLabels(["Band", "Description", "Colour", "Min", "Mean", "Max"])
        for row, info in enumerate(self.infos):
            cells = [
                str(info.number),
                info.description or "—",
                info.colour,
                *(_number(v) for v in (info.minimum, info.mean, info.maximum)),
            ]
            for column, text in enumerate(cells):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        # Every band in view (up to 8; more scroll): they are what the question is about.
        rows = min(len(self.infos), 8)
        row_height = self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(
            header.sizeHint().height() + rows * row_height + 2 * self.table.frameWidth()
        )
        layout.addWidget(self.table)
        form = QFormLayout()
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("—", "")
        for value, label in PRESETS:
            if value:
                self.preset_combo.addItem(label, value)
        self.preset_combo.currentIndexChanged.connect(self._apply_preset)
        form.addRow("Sensor band order", self.preset_combo)
        self.combos: dict[str, QComboBox] = {}
        for role in roles:
            combo = QComboBox()
            combo.addItem("—", 0)
            for info in self.infos:
                label = f"Band {info.number}" + (f": {info.description}" if info.description else "")
                combo.addItem(label, info.number)
            combo.currentIndexChanged.connect(self._update_ok)
            self.combos[role] = combo
            form.addRow(ROLE_LABELS[role], combo)
        layout.addLayout(form)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._update_ok()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        QTimer.singleShot(0, self.fit)

    def fit(self) -> None:
        """Tall enough for the wrapped intro at this width (Qt sizes a window before it wraps)."""
        layout = self.layout()
        width = max(self.width(), self.minimumWidth())
        height = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else self.sizeHint().height()
        self.setMinimumHeight(height)
        self.resize(width, height)

    def _apply_preset(self) -> None:
        name = self.preset_combo.currentData()
        if not name:
            return
        preset = CORE_PRESETS[name]
        roles = {**preset.roles_for(len(self.infos))}
        roles.update(dict(zip(("red", "green", "blue"), preset.rgb, strict=True)))
        for role, combo in self.combos.items():
            band = roles.get(role, 0)
            combo.setCurrentIndex(max(combo.findData(band if band <= len(self.infos) else 0), 0))

    def chosen_preset(self) -> str | None:
        """The sensor band order chosen, when the roles are still that order's (else None)."""
        name = self.preset_combo.currentData()
        if not name:
            return None
        preset = CORE_PRESETS[name]
        expected = {**preset.roles_for(len(self.infos))}
        expected.update(dict(zip(("red", "green", "blue"), preset.rgb, strict=True)))
        same = all(expected.get(role, 0) == band for role, band in self.chosen().items())
        return name if same else None

    def chosen(self) -> dict[str, int]:
        """{role: band} of the roles given (0 left out)."""
        return {role: combo.currentData() for role, combo in self.combos.items() if combo.currentData()}

    def problem(self) -> str | None:
        """What is still missing from the answer (None: OK can be pressed)."""
        roles = self.chosen()
        if "red" in self.roles and any(r not in roles for r in ("red", "green", "blue")):
            return "Choose the red, green and blue bands."
        if "green" in self.roles and "green" not in roles:
            return "Choose the green band."
        if "nir" in self.roles and "nir" not in roles and "swir" not in roles:
            return "Choose the NIR or the SWIR band."
        picked = list(roles.values())
        if len(set(picked)) < len(picked):
            return "Each role needs a band of its own."
        return None

    def _update_ok(self) -> None:
        problem = self.problem()
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(problem is None)
        ok.setToolTip(problem or "")


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
