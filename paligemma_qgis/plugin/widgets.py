"""Form pieces the "Map water" and "Export training data" dialogs share.

Rows and combos, the raster picker, the band choice (widgets, checks and QgsSettings keys),
the VAE file picker (with its Download… button) and its check. No heavy import.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from .messages import push_item
from .options import PRESETS, raster_file
from .raster_probe import raster_facts
from .worker_env import worker_python

BANDS_RE = re.compile(r"^\s*\d+\s*(,\s*\d+\s*){0,2}$")
RASTER_FILTER = "Rasters (*.tif *.tiff *.vrt *.img *.jp2);;All files (*)"


def combo_box(items: list[tuple[str, str]]) -> QComboBox:
    """A combo of ``(value, label)`` items; ``currentData()`` is the value."""
    combo = QComboBox()
    for value, label in items:
        combo.addItem(label, value)
    return combo


def set_combo_value(combo: QComboBox, value: str) -> None:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)


def row(*widgets: QWidget) -> QWidget:
    """Widgets side by side, as one form row."""
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


class RasterPicker(QWidget):
    """A raster layer of the project, or a raster file chosen with the … button.

    ``select_last``: start on the project's last raster layer instead of on nothing.
    """

    def __init__(
        self, title: str, parent: QWidget | None = None, min_width: int = 300, select_last: bool = False
    ) -> None:
        super().__init__(parent)
        self.title = title
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QgsMapLayerComboBox()
        self.combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.combo.setAllowEmptyLayer(True)
        if select_last:
            self.combo.setCurrentIndex(self.combo.count() - 1 if self.combo.count() > 1 else 0)
        else:
            self.combo.setLayer(None)
        self.combo.setMinimumWidth(min_width)
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a raster file that is not in the project")
        self.browse.clicked.connect(self._browse)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.title, "", RASTER_FILTER)
        if path:
            self.set_file(path)

    def set_file(self, path: str) -> None:
        """Offer a raster file that is not a project layer and select it."""
        items = list(self.combo.additionalItems())
        if path not in items:
            self.combo.setAdditionalItems(items + [path])
        self.combo.setCurrentIndex(self.combo.findText(path))

    def set_layer(self, layer: QgsRasterLayer | None) -> None:
        self.combo.setLayer(layer)

    def layer(self) -> QgsRasterLayer | None:
        return self.combo.currentLayer()

    def path(self) -> str | None:
        """The raster file on disk (None: nothing chosen, or a web/in-memory layer)."""
        layer = self.combo.currentLayer()
        if layer is not None:
            return raster_file(layer)
        text = self.combo.currentText()
        return text if text and Path(text).is_file() else None

    def name(self) -> str:
        layer = self.combo.currentLayer()
        if layer is not None:
            return layer.name()
        return Path(self.combo.currentText() or "raster").stem

    def layer_id(self) -> str:
        layer = self.combo.currentLayer()
        return layer.id() if layer is not None else ""

    def has_choice(self) -> bool:
        """Whether a layer or a file is chosen."""
        return self.combo.currentLayer() is not None or bool(self.combo.currentText())

    def restore(self, path: str, layer_id: str = "") -> None:
        """Select a remembered choice again: the same project layer, else a layer of the same file,
        else the file itself (a remembered layer that left the project leaves nothing chosen)."""
        project = QgsProject.instance()
        layer = project.mapLayer(layer_id) if layer_id else None
        if not isinstance(layer, QgsRasterLayer) and path:
            layer = next((lyr for lyr in project.mapLayers().values() if raster_file(lyr) == path), None)
        if isinstance(layer, QgsRasterLayer):
            self.set_layer(layer)
        elif path and not layer_id and Path(path).is_file():
            self.set_file(path)
        elif path or layer_id:  # the remembered choice is gone: nothing chosen (not another layer)
            self.combo.setLayer(None)

    def check(self, what: str, errors: list[str]) -> int | None:
        """Append a problem with the choice to ``errors``; return the band count when readable.

        ``what`` names the choice with its article ("the mask raster").
        """
        layer = self.combo.currentLayer()
        path = self.path()
        if layer is None and not self.combo.currentText():
            errors.append(f"Choose {what} (a raster layer of the project, or a file with …).")
            return None
        if path is None:
            name = layer.name() if layer is not None else self.combo.currentText()
            errors.append(
                f"{name}: not a raster file on disk (web and in-memory rasters cannot be read by the worker)."
            )
            return None
        if layer is not None:
            return layer.bandCount()
        facts = raster_facts(path)  # no QgsRasterLayer: its statistics would land in a .aux.xml
        if facts is None:
            errors.append(f"{path}: GDAL cannot open this file as a raster.")
            return None
        return facts.bands


class BandsGroup(QGroupBox):
    """The "Bands" box: preset, the bands shown (R,G,B or one grey band), green / NIR / SWIR."""

    def __init__(self, bands_label: str, placeholder: str, spins_label: str, spin_tooltip: str) -> None:
        super().__init__("Bands")
        self.form = form = QFormLayout(self)
        self.preset_combo = combo_box(PRESETS)
        form.addRow("Preset", self.preset_combo)
        self.bands_edit = QLineEdit()
        self.bands_edit.setPlaceholderText(placeholder)
        form.addRow(bands_label, self.bands_edit)
        self.green_spin, self.nir_spin, self.swir_spin = (band_spin(spin_tooltip) for _ in range(3))
        self.index_row = row(self.green_spin, self.nir_spin, self.swir_spin)
        form.addRow(spins_label, self.index_row)

    def widgets(self) -> tuple[QComboBox, QLineEdit, QSpinBox, QSpinBox, QSpinBox]:
        """(preset combo, bands edit, green, NIR and SWIR spins), for a dialog's own attributes."""
        return self.preset_combo, self.bands_edit, self.green_spin, self.nir_spin, self.swir_spin

    def check(
        self,
        band_count: int | None,
        errors: list[str],
        index_bands: bool = True,
        rgb: bool = True,
        raster: str = "the raster",
    ) -> None:
        """Append problems with the shown bands (``rgb``) and the water-index bands (``index_bands``):
        only those the dialog shows for its current choices. ``raster`` names the raster with
        ``band_count`` bands (in a run over several, the one with the fewest)."""
        bands = self.bands_edit.text().strip()
        if bands and rgb:
            if not BANDS_RE.match(bands) or len(bands.split(",")) == 2:
                errors.append(f"Bands '{bands}': give one band (grey) or three (R,G,B), like 3,2,1.")
            elif band_count is not None and any(not 1 <= int(b) <= band_count for b in bands.split(",")):
                errors.append(f"Bands '{bands}': {raster} has bands 1 to {band_count}.")
        if not index_bands:
            return
        for label, spin in (("Green", self.green_spin), ("NIR", self.nir_spin), ("SWIR", self.swir_spin)):
            if band_count is not None and spin.value() > band_count:
                errors.append(f"{label} band {spin.value()}: {raster} has bands 1 to {band_count}.")

    def apply_roles(self, roles: dict[str, int], preset: str | None = None) -> None:
        """The band question's answer: a sensor's band order into Preset (so it is not asked again);
        else R,G,B into the bands field, green/NIR/SWIR into the spins."""
        if preset:
            set_combo_value(self.preset_combo, preset)
            return
        if all(r in roles for r in ("red", "green", "blue")):
            self.bands_edit.setText(f"{roles['red']},{roles['green']},{roles['blue']}")
        for role, spin in (("green", self.green_spin), ("nir", self.nir_spin), ("swir", self.swir_spin)):
            if role in roles and not ("red" in roles and role == "green"):
                spin.setValue(int(roles[role]))

    def bands(self) -> str | None:
        """The bands for the job ("3,2,1"), None for automatic."""
        return self.bands_edit.text().replace(" ", "") or None

    def preset(self) -> str | None:
        return self.preset_combo.currentData() or None

    def save(self, s: QgsSettings, prefix: str) -> None:
        s.setValue(f"{prefix}/preset", self.preset_combo.currentData())
        s.setValue(f"{prefix}/bands", self.bands_edit.text().strip())
        s.setValue(f"{prefix}/green", self.green_spin.value())
        s.setValue(f"{prefix}/nir", self.nir_spin.value())
        s.setValue(f"{prefix}/swir", self.swir_spin.value())

    def load(self, s: QgsSettings, prefix: str) -> None:
        set_combo_value(self.preset_combo, s.value(f"{prefix}/preset", "", type=str))
        self.bands_edit.setText(s.value(f"{prefix}/bands", "", type=str))
        self.green_spin.setValue(s.value(f"{prefix}/green", 0, type=int))
        self.nir_spin.setValue(s.value(f"{prefix}/nir", 0, type=int))
        self.swir_spin.setValue(s.value(f"{prefix}/swir", 0, type=int))


def set_row_visible(form: QFormLayout, field: QWidget, visible: bool) -> None:
    """Show or hide a form row, label included (Qt 5 has no QFormLayout.setRowVisible)."""
    field.setVisible(visible)
    label = form.labelForField(field)
    if label is not None:
        label.setVisible(visible)


def band_spin(tooltip: str) -> QSpinBox:
    """A band number, 0 shown as "auto"."""
    spin = QSpinBox()
    spin.setRange(0, 200)
    spin.setSpecialValueText("auto")
    spin.setToolTip(tooltip)
    return spin


ONE_BAND_INDEX = "The water index needs a green band and a NIR or SWIR band; this raster has one band."


def vae_file_widget() -> QgsFileWidget:
    """The VAE codec picker (empty: the downloaded vae-oid.npz)."""
    widget = QgsFileWidget()
    widget.setFilter("VAE codec (*.npz)")
    widget.lineEdit().setPlaceholderText("vae-oid.npz (empty: the downloaded one)")
    return widget


def check_vae(widget: QgsFileWidget, errors: list[str]) -> None:
    vae = widget.filePath().strip()
    if vae and not Path(vae).expanduser().is_file():
        errors.append(f"{vae}: VAE file not found.")


class VaeField(QWidget):
    """The VAE codec file (empty: the downloaded vae-oid.npz) and a Download… button.

    Download runs ``weights download`` in the worker Python as a background task (8.5 MB,
    sha256 checked), the fix the dialogs point at when the file is missing.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.file_widget = vae_file_widget()
        self.download_button = QToolButton()
        self.download_button.setText("Download…")
        self.download_button.setObjectName("paligemmaVaeDownload")
        self.download_button.setToolTip(
            "Download Google's vae-oid.npz (8.5 MB, checksum verified) into the user cache, "
            "in the background; leave the field empty to use it"
        )
        self.download_button.clicked.connect(self.download)
        layout.addWidget(self.file_widget, 1)
        layout.addWidget(self.download_button)
        self.task = None

    def filePath(self) -> str:  # noqa: N802 - QgsFileWidget's name, so the dialogs read both alike
        return self.file_widget.filePath()

    def setFilePath(self, path: str) -> None:  # noqa: N802
        self.file_widget.setFilePath(path)

    def download(self):
        """Start the download task (progress and cancel in QGIS's task bar); returns it."""
        from .setup_check import start_setup_task
        from .setup_tasks import download_weights_task

        self.download_button.setEnabled(False)
        dialog = self.window()
        in_dialog = hasattr(dialog, "show_errors") and dialog.isVisible()
        # In the dialog it was pressed in, its own bar says how it went (not QGIS's, behind the dialog).
        task = download_weights_task(worker_python()[0], quiet=in_dialog)
        self.task = task

        def ended(*_args) -> None:
            with contextlib.suppress(RuntimeError):  # the dialog is gone
                self.download_button.setEnabled(True)
                if not in_dialog or not dialog.isVisible():
                    return
                if task.succeeded:
                    dialog.show_errors([])
                    push_item(dialog.message_bar, "", "vae-oid.npz is downloaded.", Qgis.MessageLevel.Success)
                else:
                    dialog.show_errors([task.error or "The VAE download did not finish."])

        task.taskCompleted.connect(ended)
        task.taskTerminated.connect(ended)
        return start_setup_task(task)
