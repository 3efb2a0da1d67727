"""The "Map water" dialog, built in code (no .ui file to keep in step with it).

It collects choices, checks them before anything starts (messages appear in the dialog's
own message bar), remembers them in QgsSettings, and hands a plain JSON job to a
WorkerTask. It never imports the core's heavy modules: the worker validates the rest.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorFileWriter,
    QgsVectorLayer,
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
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .options import DEFAULT_MODEL, DEVICES, ENGINES, KNOWN_MODELS, PRESETS, raster_file, segment_job
from .task import WorkerTask
from .worker_env import SETTINGS_GROUP, worker_python

SETTINGS_PREFIX = f"{SETTINGS_GROUP}/dialog"
AREAS: list[tuple[str, str]] = [
    ("raster", "Whole raster"),
    ("canvas", "Current map canvas extent"),
    ("layer", "Polygons of a layer"),
]
_BANDS_RE = re.compile(r"^\s*\d+\s*(,\s*\d+\s*){0,2}$")


def _combo(items: list[tuple[str, str]]) -> QComboBox:
    combo = QComboBox()
    for value, label in items:
        combo.addItem(label, value)
    return combo


def _set_combo_value(combo: QComboBox, value: str) -> None:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)


def _row(*widgets: QWidget) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


def _looks_like_path(model: str) -> bool:
    """A folder rather than a Hub id ("owner/name" has exactly one slash)."""
    return (
        model.startswith((".", "/", "~", "\\"))
        or "\\" in model
        or (len(model) > 1 and model[1] == ":")
        or model.count("/") > 1
    )


class SegmentDialog(QDialog):
    """Choose a raster, bands, area, engine and output; Run starts a background WorkerTask."""

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(
            parent if parent is not None else (iface.mainWindow() if iface is not None else None)
        )
        self.iface = iface
        self.task: WorkerTask | None = None
        self.errors: list[str] = []
        self.setWindowTitle("PaliGemma Water — map water in a raster")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        self.message_bar = QgsMessageBar(self)
        layout.addWidget(self.message_bar)
        layout.addWidget(self._input_group())
        layout.addWidget(self._bands_group())
        layout.addWidget(self._area_group())
        layout.addWidget(self._engine_group())
        layout.addWidget(self._output_group())
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton("Run", QDialogButtonBox.AcceptRole)
        self.setup_button = self.buttons.addButton("Worker setup…", QDialogButtonBox.HelpRole)
        self.export_button = self.buttons.addButton("Training data…", QDialogButtonBox.ActionRole)
        self.export_button.setToolTip("Export chips + known water as PaliGemma fine-tuning data")
        self.export_requested = False
        self.buttons.addButton(QDialogButtonBox.Close)
        self.buttons.accepted.connect(self.run)
        self.buttons.rejected.connect(self.reject)
        self.setup_button.clicked.connect(self.open_setup)
        self.export_button.clicked.connect(self.open_export)
        layout.addWidget(self.buttons)
        self.load_settings()
        self._update_enabled()

    # ------------------------------------------------------------------ widgets
    def _input_group(self) -> QGroupBox:
        box = QGroupBox("Input raster")
        form = QFormLayout(box)
        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.raster_combo.setAllowEmptyLayer(True)
        self.raster_combo.setCurrentIndex(
            self.raster_combo.count() - 1 if self.raster_combo.count() > 1 else 0
        )
        self.raster_browse = QToolButton()
        self.raster_browse.setText("…")
        self.raster_browse.setToolTip("Choose a raster file that is not in the project")
        self.raster_browse.clicked.connect(self._browse_raster)
        form.addRow("Raster", _row(self.raster_combo, self.raster_browse))
        self.raster_combo.setMinimumWidth(380)
        return box

    def _bands_group(self) -> QGroupBox:
        box = QGroupBox("Bands")
        form = QFormLayout(box)
        self.preset_combo = _combo(PRESETS)
        form.addRow("Preset", self.preset_combo)
        self.bands_edit = QLineEdit()
        self.bands_edit.setPlaceholderText("automatic, or R,G,B band numbers like 3,2,1 (one number: grey)")
        form.addRow("Bands shown to the model", self.bands_edit)
        self.green_spin, self.nir_spin, self.swir_spin = (self._band_spin() for _ in range(3))
        form.addRow(
            "Green / NIR / SWIR band",
            _row(self.green_spin, self.nir_spin, self.swir_spin),
        )
        return box

    @staticmethod
    def _band_spin() -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, 200)
        spin.setSpecialValueText("auto")
        spin.setToolTip("Band number for the water index; auto = band descriptions, then the preset")
        return spin

    def _area_group(self) -> QGroupBox:
        box = QGroupBox("Area")
        form = QFormLayout(box)
        self.area_combo = _combo(AREAS)
        self.area_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("Map", self.area_combo)
        self.aoi_combo = QgsMapLayerComboBox()
        self.aoi_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.selected_check = QCheckBox("Selected features only")
        form.addRow("Polygon layer", _row(self.aoi_combo, self.selected_check))
        return box

    def _engine_group(self) -> QGroupBox:
        box = QGroupBox("Engine")
        form = QFormLayout(box)
        self.engine_combo = _combo(ENGINES)
        self.engine_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("Engine", self.engine_combo)
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(KNOWN_MODELS)
        self.model_combo.setToolTip("A Hugging Face model id (downloaded once) or a local model folder")
        self.model_browse = QToolButton()
        self.model_browse.setText("…")
        self.model_browse.clicked.connect(self._browse_model)
        form.addRow("Model", _row(self.model_combo, self.model_browse))
        self.model_combo.setMinimumWidth(380)
        self.vae_widget = QgsFileWidget()
        self.vae_widget.setFilter("VAE codec (*.npz)")
        self.vae_widget.lineEdit().setPlaceholderText("vae-oid.npz (empty: the downloaded one)")
        form.addRow("VAE file", self.vae_widget)
        self.device_combo = _combo(DEVICES)
        form.addRow("Device", self.device_combo)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        form.addRow("Batch size", self.batch_spin)
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 200)
        self.overlap_spin.setValue(32)
        self.overlap_spin.setSuffix(" px")
        form.addRow("Chip overlap", self.overlap_spin)
        self.resolution_spin = QDoubleSpinBox()
        self.resolution_spin.setRange(0.0, 10000.0)
        self.resolution_spin.setDecimals(2)
        self.resolution_spin.setSuffix(" m/px")
        self.resolution_spin.setSpecialValueText("native")
        self.resolution_spin.setToolTip(
            "Resample so that a 224-pixel chip covers the ground size the model sees best"
        )
        form.addRow("Target resolution", self.resolution_spin)
        self.min_area_spin = QDoubleSpinBox()
        self.min_area_spin.setRange(0.0, 1e12)
        self.min_area_spin.setDecimals(0)
        self.min_area_spin.setSuffix(" m²")
        form.addRow("Minimum water area", self.min_area_spin)
        return box

    def _output_group(self) -> QGroupBox:
        box = QGroupBox("Output")
        form = QFormLayout(box)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoPackage (*.gpkg)")
        self.output_widget.setConfirmOverwrite(False)  # the Overwrite box decides
        form.addRow("GeoPackage", self.output_widget)
        self.overwrite_check = QCheckBox("Overwrite an existing file")
        form.addRow("", self.overwrite_check)
        return box

    # ------------------------------------------------------------------ helpers
    def _browse_raster(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Raster", "", "Rasters (*.tif *.tiff *.vrt *.img *.jp2);;All files (*)"
        )
        if path:
            self.set_raster_file(path)

    def _browse_model(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder")
        if path:
            self.model_combo.setEditText(path)

    def set_raster_file(self, path: str) -> None:
        """Offer a raster file that is not a project layer and select it."""
        items = list(self.raster_combo.additionalItems())
        if path not in items:
            self.raster_combo.setAdditionalItems(items + [path])
        self.raster_combo.setCurrentIndex(self.raster_combo.findText(path))

    def set_raster_layer(self, layer: QgsRasterLayer) -> None:
        self.raster_combo.setLayer(layer)

    def raster_path(self) -> str | None:
        layer = self.raster_combo.currentLayer()
        if layer is not None:
            return raster_file(layer)
        text = self.raster_combo.currentText()
        return text if text and Path(text).is_file() else None

    def raster_name(self) -> str:
        layer = self.raster_combo.currentLayer()
        if layer is not None:
            return layer.name()
        return Path(self.raster_combo.currentText() or "raster").stem

    def engine(self) -> str:
        return self.engine_combo.currentData()

    def area(self) -> str:
        return self.area_combo.currentData()

    def _update_enabled(self) -> None:
        paligemma = self.engine() == "paligemma"
        for widget in (
            self.model_combo,
            self.model_browse,
            self.vae_widget,
            self.device_combo,
        ):
            widget.setEnabled(paligemma)
        on_layer = self.area() == "layer"
        self.aoi_combo.setEnabled(on_layer)
        self.selected_check.setEnabled(on_layer)

    def show_errors(self, errors: list[str]) -> None:
        self.message_bar.clearWidgets()
        for error in reversed(errors):
            self.message_bar.pushMessage("Cannot run", error, Qgis.Warning, 0)

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[str]:
        """Problems that stop a run, in words the user can act on (empty when all is fine)."""
        errors: list[str] = []
        layer = self.raster_combo.currentLayer()
        raster = self.raster_path()
        band_count = None
        if layer is None and not self.raster_combo.currentText():
            errors.append("Choose an input raster (a raster layer of the project, or a file with …).")
        elif raster is None:
            name = layer.name() if layer is not None else self.raster_combo.currentText()
            errors.append(
                f"{name}: not a raster file on disk (web and in-memory rasters cannot be read by the worker)."
            )
        elif layer is not None:
            band_count = layer.bandCount()
        else:
            probe = QgsRasterLayer(raster, "probe", "gdal")
            if not probe.isValid():
                errors.append(f"{raster}: GDAL cannot open this file as a raster.")
            else:
                band_count = probe.bandCount()

        bands = self.bands_edit.text().strip()
        if bands:
            if not _BANDS_RE.match(bands) or len(bands.split(",")) == 2:
                errors.append(f"Bands '{bands}': give one band (grey) or three (R,G,B), like 3,2,1.")
            elif band_count is not None and any(not 1 <= int(b) <= band_count for b in bands.split(",")):
                errors.append(f"Bands '{bands}': the raster has bands 1 to {band_count}.")
        for label, spin in (("Green", self.green_spin), ("NIR", self.nir_spin), ("SWIR", self.swir_spin)):
            if band_count is not None and spin.value() > band_count:
                errors.append(f"{label} band {spin.value()}: the raster has bands 1 to {band_count}.")
        if self.engine() == "water-index" and band_count is not None and band_count < 2:
            errors.append(
                "The water index needs a green band and a NIR or SWIR band; this raster has one band."
            )

        if self.area() == "canvas" and (self.iface is None or self.iface.mapCanvas() is None):
            errors.append("No map canvas to take the extent from.")
        if self.area() == "layer":
            aoi = self.aoi_combo.currentLayer()
            if aoi is None:
                errors.append("Choose the polygon layer that limits the area.")
            elif self.selected_check.isChecked() and aoi.selectedFeatureCount() == 0:
                errors.append(f"{aoi.name()}: no features are selected.")

        if self.engine() == "paligemma":
            model = self.model_combo.currentText().strip()
            if not model:
                errors.append(
                    "Give a model: a Hugging Face id like google/paligemma2-3b-mix-224, or a model folder."
                )
            elif Path(model).expanduser().exists() or _looks_like_path(model):
                folder = Path(model).expanduser()
                if not folder.is_dir():
                    errors.append(f"{model}: model folder not found.")
                elif not (folder / "config.json").is_file():
                    errors.append(f"{model}: not a model folder (no config.json).")
            vae = self.vae_widget.filePath().strip()
            if vae and not Path(vae).expanduser().is_file():
                errors.append(f"{vae}: VAE file not found.")

        output = self.output_widget.filePath().strip()
        if not output:
            errors.append("Choose the output GeoPackage.")
        else:
            out = Path(output).expanduser()
            if out.suffix.lower() != ".gpkg":
                errors.append(f"{output}: the output must be a GeoPackage (.gpkg).")
            elif not out.parent.is_dir():
                errors.append(f"{output}: the folder {out.parent} does not exist.")
            elif raster is not None and out.resolve() == Path(raster).resolve():
                errors.append(f"{output}: the output would replace the input raster.")
            elif out.exists() and not self.overwrite_check.isChecked():
                errors.append(f"{output} exists: tick 'Overwrite an existing file' or choose another name.")
        self.errors = errors
        return errors

    # ------------------------------------------------------------------ job
    def _aoi(self, temp_dir: Path) -> str | None:
        if self.area() == "canvas":
            canvas = self.iface.mapCanvas()
            extent = canvas.extent()
            crs = canvas.mapSettings().destinationCrs()
            values = (
                f"{extent.xMinimum()!r},{extent.yMinimum()!r},{extent.xMaximum()!r},{extent.yMaximum()!r}"
            )
            if crs.isValid() and crs.authid():
                return f"{values},{crs.authid()}"
            return values
        if self.area() == "layer":
            layer = self.aoi_combo.currentLayer()
            return write_aoi(layer, self.selected_check.isChecked(), temp_dir / "aoi.gpkg")
        return None

    def build_job(self, temp_dir: Path | None = None) -> dict:
        """The worker job for the current choices (call validate() first)."""
        temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        return segment_job(
            self.raster_path() or "",
            str(Path(self.output_widget.filePath().strip()).expanduser()),
            engine=self.engine(),
            bands=self.bands_edit.text().replace(" ", "") or None,
            preset=self.preset_combo.currentData() or None,
            green=self.green_spin.value(),
            nir=self.nir_spin.value(),
            swir=self.swir_spin.value(),
            overlap=self.overlap_spin.value(),
            resolution=self.resolution_spin.value(),
            aoi=self._aoi(temp_dir),
            min_area_m2=self.min_area_spin.value(),
            model=self.model_combo.currentText().strip(),
            vae=self.vae_widget.filePath().strip() or None,
            device=self.device_combo.currentData(),
            batch_size=self.batch_spin.value(),
            overwrite=self.overwrite_check.isChecked(),
        )

    def run(self) -> WorkerTask | None:
        """Validate, remember the choices, start the background task (None when invalid)."""
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
        task = WorkerTask(
            f"Water in {self.raster_name()}",
            job,
            python=worker_python()[0],
            group_name=self.raster_name(),
            iface=self.iface,
            cleanup=[temp_dir],
        )
        self.task = task
        QgsApplication.taskManager().addTask(task)
        self.accept()
        return task

    def open_export(self) -> None:
        """Close this dialog and open the training-data export (the caller opens it, see plugin.py)."""
        self.export_requested = True
        self.reject()

    def open_setup(self) -> None:
        from .setup_check import SetupCheckDialog

        SetupCheckDialog(
            model=self.model_combo.currentText().strip() or None,
            vae=self.vae_widget.filePath().strip() or None,
            parent=self,
        ).exec_()

    # ------------------------------------------------------------------ settings
    def save_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        s.setValue(f"{p}/raster", self.raster_path() or "")
        s.setValue(f"{p}/preset", self.preset_combo.currentData())
        s.setValue(f"{p}/bands", self.bands_edit.text().strip())
        s.setValue(f"{p}/green", self.green_spin.value())
        s.setValue(f"{p}/nir", self.nir_spin.value())
        s.setValue(f"{p}/swir", self.swir_spin.value())
        s.setValue(f"{p}/area", self.area())
        s.setValue(f"{p}/selected_only", self.selected_check.isChecked())
        s.setValue(f"{p}/engine", self.engine())
        s.setValue(f"{p}/model", self.model_combo.currentText().strip())
        s.setValue(f"{p}/vae", self.vae_widget.filePath().strip())
        s.setValue(f"{p}/device", self.device_combo.currentData())
        s.setValue(f"{p}/batch_size", self.batch_spin.value())
        s.setValue(f"{p}/overlap", self.overlap_spin.value())
        s.setValue(f"{p}/resolution", self.resolution_spin.value())
        s.setValue(f"{p}/min_area_m2", self.min_area_spin.value())
        s.setValue(f"{p}/output", self.output_widget.filePath().strip())
        s.setValue(f"{p}/overwrite", self.overwrite_check.isChecked())

    def load_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        raster = s.value(f"{p}/raster", "", type=str)
        if raster:
            layer = next(
                (lyr for lyr in QgsProject.instance().mapLayers().values() if raster_file(lyr) == raster),
                None,
            )
            if layer is not None:
                self.set_raster_layer(layer)
            elif Path(raster).is_file():
                self.set_raster_file(raster)
        _set_combo_value(self.preset_combo, s.value(f"{p}/preset", "", type=str))
        self.bands_edit.setText(s.value(f"{p}/bands", "", type=str))
        self.green_spin.setValue(s.value(f"{p}/green", 0, type=int))
        self.nir_spin.setValue(s.value(f"{p}/nir", 0, type=int))
        self.swir_spin.setValue(s.value(f"{p}/swir", 0, type=int))
        _set_combo_value(self.area_combo, s.value(f"{p}/area", "raster", type=str))
        self.selected_check.setChecked(s.value(f"{p}/selected_only", False, type=bool))
        _set_combo_value(self.engine_combo, s.value(f"{p}/engine", "paligemma", type=str))
        self.model_combo.setEditText(s.value(f"{p}/model", DEFAULT_MODEL, type=str) or DEFAULT_MODEL)
        self.vae_widget.setFilePath(s.value(f"{p}/vae", "", type=str))
        _set_combo_value(self.device_combo, s.value(f"{p}/device", "auto", type=str))
        self.batch_spin.setValue(s.value(f"{p}/batch_size", 4, type=int))
        self.overlap_spin.setValue(s.value(f"{p}/overlap", 32, type=int))
        self.resolution_spin.setValue(s.value(f"{p}/resolution", 0.0, type=float))
        self.min_area_spin.setValue(s.value(f"{p}/min_area_m2", 0.0, type=float))
        self.output_widget.setFilePath(s.value(f"{p}/output", "", type=str))
        self.overwrite_check.setChecked(s.value(f"{p}/overwrite", False, type=bool))


def write_aoi(layer: QgsVectorLayer, selected_only: bool, path: Path) -> str:
    """Copy a polygon layer (or its selection) to a GeoPackage the worker can read."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "aoi"
    options.onlySelectedFeatures = selected_only
    result = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsProject.instance().transformContext(), options
    )
    error, message = result[0], result[1]
    if error != QgsVectorFileWriter.NoError:
        raise ValueError(f"{layer.name()}: cannot copy the area of interest ({message})")
    return str(path)
