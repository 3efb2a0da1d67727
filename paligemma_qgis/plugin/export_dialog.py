"""The "Export training data" dialog: raster + known water -> PaliGemma fine-tuning chips.

Same pattern as the "Map water" dialog: it checks the choices before anything starts
(messages in its own message bar), remembers them in QgsSettings, and hands a plain JSON
job (``{"task": "export", ...}``, read by core.export.ExportOptions) to a WorkerTask, which
adds ``chips`` and ``review`` of OUT_DIR/chips.gpkg when the export succeeds.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox, QgsMessageBar
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .dialog import _BANDS_RE, _combo, _row, _set_combo_value
from .options import (
    CHIP_SIZES,
    EMPTY_POLICIES,
    LABEL_SOURCES,
    PRESETS,
    WATER_INDEX_LABELS,
    export_job,
    raster_file,
)
from .task import WorkerTask
from .worker_env import SETTINGS_GROUP, worker_python

SETTINGS_PREFIX = f"{SETTINGS_GROUP}/export"
# What an export folder holds (core.export.outputs._EXPORT_MARKERS): only such a folder is replaced.
EXPORT_MARKERS = ("train.jsonl", "valid.jsonl", "images", "chips.gpkg", "export.json")
VECTOR_FILTER = "Vector files (*.gpkg *.shp *.geojson *.json *.fgb *.kml *.gml *.sqlite);;All files (*)"
RASTER_FILTER = "Rasters (*.tif *.tiff *.vrt *.img *.jp2);;All files (*)"


class RasterPicker(QWidget):
    """A raster layer of the project, or a raster file chosen with the … button."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QgsMapLayerComboBox()
        self.combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.combo.setAllowEmptyLayer(True)
        self.combo.setLayer(None)
        self.combo.setMinimumWidth(300)
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

    def check(self, what: str, errors: list[str]) -> int | None:
        """Append a problem with the choice to ``errors``; return the band count when readable."""
        layer = self.combo.currentLayer()
        path = self.path()
        if layer is None and not self.combo.currentText():
            errors.append(f"Choose the {what} (a raster layer of the project, or a file with …).")
            return None
        if path is None:
            name = layer.name() if layer is not None else self.combo.currentText()
            errors.append(
                f"{name}: not a raster file on disk (web and in-memory rasters cannot be read by the worker)."
            )
            return None
        if layer is not None:
            return layer.bandCount()
        probe = QgsRasterLayer(path, "probe", "gdal")
        if not probe.isValid():
            errors.append(f"{path}: GDAL cannot open this file as a raster.")
            return None
        return probe.bandCount()


class ExportDialog(QDialog):
    """Raster + known water -> chips, train/valid JSONL and chips.gpkg for review (core.export)."""

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(
            parent if parent is not None else (iface.mainWindow() if iface is not None else None)
        )
        self.iface = iface
        self.task: WorkerTask | None = None
        self.errors: list[str] = []
        self.setWindowTitle("PaliGemma Water — export training data")
        layout = QVBoxLayout(self)
        self.message_bar = QgsMessageBar(self)
        layout.addWidget(self.message_bar)
        columns = QHBoxLayout()
        left, right = QVBoxLayout(), QVBoxLayout()
        left.addWidget(self._input_group())
        left.addWidget(self._labels_group())
        left.addWidget(self._bands_group())
        left.addStretch(1)
        right.addWidget(self._chips_group())
        right.addWidget(self._split_group())
        right.addWidget(self._output_group())
        right.addStretch(1)
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        layout.addLayout(columns)
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton("Export", QDialogButtonBox.AcceptRole)
        self.setup_button = self.buttons.addButton("Worker setup…", QDialogButtonBox.HelpRole)
        self.buttons.addButton(QDialogButtonBox.Close)
        self.buttons.accepted.connect(self.run)
        self.buttons.rejected.connect(self.reject)
        self.setup_button.clicked.connect(self.open_setup)
        layout.addWidget(self.buttons)
        self.load_settings()
        self._update_enabled()

    # ------------------------------------------------------------------ widgets
    def _input_group(self) -> QGroupBox:
        box = QGroupBox("Input raster")
        form = QFormLayout(box)
        self.raster_picker = RasterPicker("Raster")
        form.addRow("Raster", self.raster_picker)
        return box

    def _labels_group(self) -> QGroupBox:
        box = QGroupBox("Known water (labels)")
        form = QFormLayout(box)
        self.labels_combo = _combo(LABEL_SOURCES)
        self.labels_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("From", self.labels_combo)
        self.labels_stack = QStackedWidget()
        # One page per source, in LABEL_SOURCES order.
        self.polygon_combo = QgsMapLayerComboBox()
        self.polygon_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.polygon_combo.setAllowEmptyLayer(True)
        self.polygon_combo.setLayer(None)
        self.polygon_selected_check = QCheckBox("Selected features only")
        self.labels_stack.addWidget(_row(self.polygon_combo, self.polygon_selected_check))
        self.vector_widget = QgsFileWidget()
        self.vector_widget.setFilter(VECTOR_FILTER)
        self.vector_layer_edit = QLineEdit()
        self.vector_layer_edit.setPlaceholderText("layer name (optional)")
        self.vector_layer_edit.setMaximumWidth(170)
        self.labels_stack.addWidget(_row(self.vector_widget, self.vector_layer_edit))
        self.mask_picker = RasterPicker("Mask raster")
        self.mask_threshold_spin = QDoubleSpinBox()
        self.mask_threshold_spin.setRange(-1e9, 1e9)
        self.mask_threshold_spin.setDecimals(2)
        self.mask_threshold_spin.setPrefix("water > ")
        self.mask_threshold_spin.setToolTip("Mask pixels above this value are water; nodata is unlabelled")
        self.labels_stack.addWidget(_row(self.mask_picker, self.mask_threshold_spin))
        self.labels_stack.addWidget(QWidget())  # water index: nothing to choose
        form.addRow("Labels", self.labels_stack)
        return box

    def _bands_group(self) -> QGroupBox:
        box = QGroupBox("Bands")
        form = QFormLayout(box)
        self.preset_combo = _combo(PRESETS)
        form.addRow("Preset", self.preset_combo)
        self.bands_edit = QLineEdit()
        self.bands_edit.setPlaceholderText("automatic, or R,G,B band numbers like 3,2,1")
        form.addRow("Chip bands (R,G,B)", self.bands_edit)
        self.green_spin, self.nir_spin, self.swir_spin = (self._band_spin() for _ in range(3))
        form.addRow("Green / NIR / SWIR", _row(self.green_spin, self.nir_spin, self.swir_spin))
        return box

    @staticmethod
    def _band_spin() -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, 200)
        spin.setSpecialValueText("auto")
        spin.setToolTip("Band for water-index labels; auto = band descriptions, then the preset")
        return spin

    def _chips_group(self) -> QGroupBox:
        box = QGroupBox("Chips and masks")
        form = QFormLayout(box)
        self.size_combo = QComboBox()
        for size in CHIP_SIZES:
            self.size_combo.addItem(f"{size} px (PaliGemma …-{size})", size)
        form.addRow("Chip size", self.size_combo)
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 400)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip("Overlapping training chips next to a validation chip are left out")
        form.addRow("Chip overlap", self.overlap_spin)
        self.resolution_spin = QDoubleSpinBox()
        self.resolution_spin.setRange(0.0, 10000.0)
        self.resolution_spin.setDecimals(2)
        self.resolution_spin.setSuffix(" m/px")
        self.resolution_spin.setSpecialValueText("native")
        form.addRow("Target resolution", self.resolution_spin)
        self.min_pixels_spin = QSpinBox()
        self.min_pixels_spin.setRange(1, 1_000_000)
        self.min_pixels_spin.setValue(16)
        self.min_pixels_spin.setSuffix(" px")
        self.min_pixels_spin.setToolTip("Smaller water objects are not written (each costs ~24 tokens)")
        form.addRow("Smallest water object", self.min_pixels_spin)
        self.vae_widget = QgsFileWidget()
        self.vae_widget.setFilter("VAE codec (*.npz)")
        self.vae_widget.lineEdit().setPlaceholderText("vae-oid.npz (empty: the downloaded one)")
        form.addRow("VAE file", self.vae_widget)
        self.allow_custom_check = QCheckBox("Accept a VAE that is not Google's vae-oid.npz")
        form.addRow("", self.allow_custom_check)
        return box

    def _split_group(self) -> QGroupBox:
        box = QGroupBox("Train / valid split")
        form = QFormLayout(box)
        self.valid_spin = QDoubleSpinBox()
        self.valid_spin.setRange(0.0, 0.9)
        self.valid_spin.setSingleStep(0.05)
        self.valid_spin.setValue(0.2)
        form.addRow("Validation share", self.valid_spin)
        self.block_spin = QSpinBox()
        self.block_spin.setRange(1, 1000)
        self.block_spin.setValue(4)
        self.block_spin.setSuffix(" chips")
        self.block_spin.setToolTip("Whole blocks of chips go to train or valid, so neighbours do not leak")
        form.addRow("Spatial block side", self.block_spin)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2_147_483_647)
        form.addRow("Random seed", self.seed_spin)
        self.empty_combo = _combo(EMPTY_POLICIES)
        self.empty_combo.currentIndexChanged.connect(self._update_enabled)
        self.empty_cap_spin = QDoubleSpinBox()
        self.empty_cap_spin.setRange(0.0, 1.0)
        self.empty_cap_spin.setSingleStep(0.05)
        self.empty_cap_spin.setValue(0.2)
        self.empty_cap_spin.setToolTip("Chips without water make at most this share of each split")
        form.addRow("Chips without water", _row(self.empty_combo, self.empty_cap_spin))
        return box

    def _output_group(self) -> QGroupBox:
        box = QGroupBox("Output")
        form = QFormLayout(box)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        form.addRow("Folder", self.output_widget)
        self.overwrite_check = QCheckBox("Replace an earlier export in this folder")
        form.addRow("", self.overwrite_check)
        return box

    # ------------------------------------------------------------------ helpers
    def labels_source(self) -> str:
        return self.labels_combo.currentData()

    def set_raster_layer(self, layer: QgsRasterLayer | None) -> None:
        self.raster_picker.set_layer(layer)

    def _update_enabled(self) -> None:
        self.labels_stack.setCurrentIndex(max(self.labels_combo.currentIndex(), 0))
        water_index = self.labels_source() == WATER_INDEX_LABELS
        for spin in (self.green_spin, self.nir_spin, self.swir_spin):
            spin.setEnabled(water_index)
        self.empty_cap_spin.setEnabled(self.empty_combo.currentData() == "cap")

    def show_errors(self, errors: list[str]) -> None:
        self.message_bar.clearWidgets()
        for error in reversed(errors):
            self.message_bar.pushMessage("Cannot export", error, Qgis.Warning, 0)

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[str]:
        """Problems that stop an export, in words the user can act on (empty when all is fine)."""
        errors: list[str] = []
        band_count = self.raster_picker.check("input raster", errors)
        raster = self.raster_picker.path()
        inputs = [raster] if raster else []

        source = self.labels_source()
        if source == "layer":
            layer = self.polygon_combo.currentLayer()
            if layer is None:
                errors.append("Choose the polygon layer that holds the known water.")
            elif not layer.crs().isValid():
                errors.append(f"{layer.name()}: the layer has no CRS, so it cannot be matched to the raster.")
            elif self.polygon_selected_check.isChecked() and layer.selectedFeatureCount() == 0:
                errors.append(f"{layer.name()}: no features are selected.")
            elif layer.featureCount() == 0:
                errors.append(f"{layer.name()}: the layer has no features.")
        elif source == "vector":
            path = self.vector_widget.filePath().strip()
            name = self.vector_layer_edit.text().strip()
            if not path:
                errors.append("Choose the vector file that holds the known water.")
            elif not Path(path).expanduser().is_file():
                errors.append(f"{path}: vector file not found.")
            else:
                uri = f"{Path(path).expanduser()}" + (f"|layername={name}" if name else "")
                probe = QgsVectorLayer(uri, "probe", "ogr")
                if not probe.isValid():
                    what = f"layer '{name}' of {path}" if name else path
                    errors.append(f"{what}: OGR cannot open it as a vector layer.")
                elif probe.geometryType() != QgsWkbTypes.PolygonGeometry:
                    errors.append(
                        f"{path}: the labels must be polygons (areas of water), not points or lines."
                    )
                inputs.append(str(Path(path).expanduser()))
        elif source == "mask":
            if self.mask_picker.check("mask raster", errors) is not None:
                inputs.append(self.mask_picker.path())
        elif band_count is not None and band_count < 2:
            errors.append(
                "The water index needs a green band and a NIR or SWIR band; this raster has one band."
            )

        bands = self.bands_edit.text().strip()
        if bands:
            if not _BANDS_RE.match(bands) or len(bands.split(",")) == 2:
                errors.append(f"Bands '{bands}': give one band (grey) or three (R,G,B), like 3,2,1.")
            elif band_count is not None and any(not 1 <= int(b) <= band_count for b in bands.split(",")):
                errors.append(f"Bands '{bands}': the raster has bands 1 to {band_count}.")
        if source == WATER_INDEX_LABELS:
            for label, spin in (("Green", self.green_spin), ("NIR", self.nir_spin), ("SWIR", self.swir_spin)):
                if band_count is not None and spin.value() > band_count:
                    errors.append(f"{label} band {spin.value()}: the raster has bands 1 to {band_count}.")

        vae = self.vae_widget.filePath().strip()
        if vae and not Path(vae).expanduser().is_file():
            errors.append(f"{vae}: VAE file not found.")
        errors += self._check_output(inputs)
        self.errors = errors
        return errors

    def _check_output(self, inputs: list[str]) -> list[str]:
        text = self.output_widget.filePath().strip()
        if not text:
            return ["Choose the output folder."]
        out = Path(text).expanduser()
        if out.exists() and not out.is_dir():
            return [f"{text} is a file; choose a folder for the export."]
        if not out.parent.is_dir():
            return [f"{text}: the folder {out.parent} does not exist."]
        resolved = out.resolve()
        for path in inputs:
            if resolved in Path(path).resolve().parents:
                return [f"{text}: the folder holds the input {path}; choose another output folder."]
        if out.is_dir() and any(out.iterdir()):
            if not self.overwrite_check.isChecked():
                return [
                    f"{text} exists and is not empty: tick 'Replace an earlier export' or choose another folder."
                ]
            if not any((out / marker).exists() for marker in EXPORT_MARKERS):
                return [f"{text} is not empty and does not hold an earlier export; it will not be replaced."]
        return []

    # ------------------------------------------------------------------ job
    def _labels(self, temp_dir: Path) -> tuple[str, str | None]:
        """(labels for ExportOptions, label layer name)."""
        source = self.labels_source()
        if source == "layer":
            return polygon_labels(
                self.polygon_combo.currentLayer(), self.polygon_selected_check.isChecked(), temp_dir
            )
        if source == "vector":
            return (
                str(Path(self.vector_widget.filePath().strip()).expanduser()),
                self.vector_layer_edit.text().strip() or None,
            )
        if source == "mask":
            return self.mask_picker.path() or "", None
        return WATER_INDEX_LABELS, None

    def build_job(self, temp_dir: Path | None = None) -> dict:
        """The worker job for the current choices (call validate() first)."""
        temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        labels, label_layer = self._labels(temp_dir)
        water_index = self.labels_source() == WATER_INDEX_LABELS
        return export_job(
            self.raster_picker.path() or "",
            str(Path(self.output_widget.filePath().strip()).expanduser()),
            labels,
            label_layer=label_layer,
            bands=self.bands_edit.text().replace(" ", "") or None,
            preset=self.preset_combo.currentData() or None,
            green=self.green_spin.value() if water_index else None,
            nir=self.nir_spin.value() if water_index else None,
            swir=self.swir_spin.value() if water_index else None,
            resolution=self.resolution_spin.value(),
            size=self.size_combo.currentData(),
            overlap=self.overlap_spin.value(),
            min_object_pixels=self.min_pixels_spin.value(),
            mask_threshold=self.mask_threshold_spin.value() if self.labels_source() == "mask" else None,
            vae=self.vae_widget.filePath().strip() or None,
            allow_custom_vae=self.allow_custom_check.isChecked(),
            valid_fraction=self.valid_spin.value(),
            block_size=self.block_spin.value(),
            seed=self.seed_spin.value(),
            empty_policy=self.empty_combo.currentData(),
            empty_cap=self.empty_cap_spin.value(),
            overwrite=self.overwrite_check.isChecked(),
        )

    def run(self) -> WorkerTask | None:
        """Validate, remember the choices, start the background export (None when invalid)."""
        errors = self.validate()
        if errors:
            self.show_errors(errors)
            return None
        self.save_settings()
        temp_dir = Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        try:
            job = self.build_job(temp_dir)
        except ValueError as exc:
            shutil.rmtree(temp_dir, ignore_errors=True)
            self.show_errors([str(exc)])
            return None
        name = self.raster_picker.name()
        task = WorkerTask(
            f"Training data from {name}",
            job,
            python=worker_python()[0],
            group_name=f"{name} training data",
            iface=self.iface,
            cleanup=[temp_dir],
        )
        self.task = task
        QgsApplication.taskManager().addTask(task)
        self.accept()
        return task

    def open_setup(self) -> None:
        from .setup_check import SetupCheckDialog

        SetupCheckDialog(vae=self.vae_widget.filePath().strip() or None, parent=self).exec_()

    # ------------------------------------------------------------------ settings
    def save_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        s.setValue(f"{p}/raster", self.raster_picker.path() or "")
        s.setValue(f"{p}/labels_source", self.labels_source())
        layer = self.polygon_combo.currentLayer()
        s.setValue(f"{p}/polygon_layer", layer.id() if layer is not None else "")
        s.setValue(f"{p}/selected_only", self.polygon_selected_check.isChecked())
        s.setValue(f"{p}/vector_file", self.vector_widget.filePath().strip())
        s.setValue(f"{p}/vector_layer", self.vector_layer_edit.text().strip())
        s.setValue(f"{p}/mask", self.mask_picker.path() or "")
        s.setValue(f"{p}/mask_threshold", self.mask_threshold_spin.value())
        s.setValue(f"{p}/preset", self.preset_combo.currentData())
        s.setValue(f"{p}/bands", self.bands_edit.text().strip())
        s.setValue(f"{p}/green", self.green_spin.value())
        s.setValue(f"{p}/nir", self.nir_spin.value())
        s.setValue(f"{p}/swir", self.swir_spin.value())
        s.setValue(f"{p}/size", self.size_combo.currentData())
        s.setValue(f"{p}/overlap", self.overlap_spin.value())
        s.setValue(f"{p}/resolution", self.resolution_spin.value())
        s.setValue(f"{p}/min_object_pixels", self.min_pixels_spin.value())
        s.setValue(f"{p}/vae", self.vae_widget.filePath().strip())
        s.setValue(f"{p}/allow_custom_vae", self.allow_custom_check.isChecked())
        s.setValue(f"{p}/valid_fraction", self.valid_spin.value())
        s.setValue(f"{p}/block_size", self.block_spin.value())
        s.setValue(f"{p}/seed", self.seed_spin.value())
        s.setValue(f"{p}/empty_policy", self.empty_combo.currentData())
        s.setValue(f"{p}/empty_cap", self.empty_cap_spin.value())
        s.setValue(f"{p}/output", self.output_widget.filePath().strip())
        s.setValue(f"{p}/overwrite", self.overwrite_check.isChecked())

    def load_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        _restore_raster(self.raster_picker, s.value(f"{p}/raster", "", type=str))
        _set_combo_value(self.labels_combo, s.value(f"{p}/labels_source", "layer", type=str))
        layer = QgsProject.instance().mapLayer(s.value(f"{p}/polygon_layer", "", type=str) or "")
        if isinstance(layer, QgsVectorLayer):
            self.polygon_combo.setLayer(layer)
        self.polygon_selected_check.setChecked(s.value(f"{p}/selected_only", False, type=bool))
        self.vector_widget.setFilePath(s.value(f"{p}/vector_file", "", type=str))
        self.vector_layer_edit.setText(s.value(f"{p}/vector_layer", "", type=str))
        _restore_raster(self.mask_picker, s.value(f"{p}/mask", "", type=str))
        self.mask_threshold_spin.setValue(s.value(f"{p}/mask_threshold", 0.0, type=float))
        _set_combo_value(self.preset_combo, s.value(f"{p}/preset", "", type=str))
        self.bands_edit.setText(s.value(f"{p}/bands", "", type=str))
        self.green_spin.setValue(s.value(f"{p}/green", 0, type=int))
        self.nir_spin.setValue(s.value(f"{p}/nir", 0, type=int))
        self.swir_spin.setValue(s.value(f"{p}/swir", 0, type=int))
        index = self.size_combo.findData(s.value(f"{p}/size", 224, type=int))
        self.size_combo.setCurrentIndex(max(index, 0))
        self.overlap_spin.setValue(s.value(f"{p}/overlap", 0, type=int))
        self.resolution_spin.setValue(s.value(f"{p}/resolution", 0.0, type=float))
        self.min_pixels_spin.setValue(s.value(f"{p}/min_object_pixels", 16, type=int))
        self.vae_widget.setFilePath(s.value(f"{p}/vae", "", type=str))
        self.allow_custom_check.setChecked(s.value(f"{p}/allow_custom_vae", False, type=bool))
        self.valid_spin.setValue(s.value(f"{p}/valid_fraction", 0.2, type=float))
        self.block_spin.setValue(s.value(f"{p}/block_size", 4, type=int))
        self.seed_spin.setValue(s.value(f"{p}/seed", 0, type=int))
        _set_combo_value(self.empty_combo, s.value(f"{p}/empty_policy", "cap", type=str))
        self.empty_cap_spin.setValue(s.value(f"{p}/empty_cap", 0.2, type=float))
        self.output_widget.setFilePath(s.value(f"{p}/output", "", type=str))
        self.overwrite_check.setChecked(s.value(f"{p}/overwrite", False, type=bool))


def _restore_raster(picker: RasterPicker, path: str) -> None:
    if not path:
        return
    layer = next(
        (lyr for lyr in QgsProject.instance().mapLayers().values() if raster_file(lyr) == path),
        None,
    )
    if layer is not None:
        picker.set_layer(layer)
    elif Path(path).is_file():
        picker.set_file(path)


def polygon_labels(layer: QgsVectorLayer, selected_only: bool, temp_dir: Path) -> tuple[str, str | None]:
    """(file, layer name) the worker reads for a polygon layer of the project.

    A plain file-backed layer is read in place; a selection, a filtered, in-memory or
    database layer is first copied to a GeoPackage in ``temp_dir`` (removed after the run).
    """
    if layer.providerType() == "ogr" and not layer.subsetString() and not selected_only:
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = parts.get("path") or ""
        if path and Path(path).is_file():
            return path, parts.get("layerName") or None
    target = temp_dir / "labels.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "labels"
    options.onlySelectedFeatures = selected_only
    result = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(target), QgsProject.instance().transformContext(), options
    )
    if result[0] != QgsVectorFileWriter.NoError:
        raise ValueError(f"{layer.name()}: cannot copy the known water for the worker ({result[1]})")
    return str(target), "labels"
