"""The "Map water" dialog, built in code (no .ui file to keep in step with it).

It collects choices, checks them before anything starts (messages appear in the dialog's
own message bar), remembers them in QgsSettings, and hands a plain JSON job to a
WorkerTask. It never imports the core's heavy modules: the worker validates the rest.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsApplication,  # noqa: F401 - tests reach the task manager through this module
    QgsMapLayerProxyModel,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .layers import LayerSnapshot, with_copies
from .options import DEFAULT_MODEL, DEVICES, ENGINES, KNOWN_MODELS, segment_job
from .widgets import (
    ONE_BAND_INDEX,
    BandsGroup,
    JobDialog,
    RasterPicker,
    check_vae,
    combo_box,
    row,
    set_combo_value,
    vae_file_widget,
)
from .worker_env import SETTINGS_GROUP

SETTINGS_PREFIX = f"{SETTINGS_GROUP}/dialog"
AREAS: list[tuple[str, str]] = [
    ("raster", "Whole raster"),
    ("canvas", "Current map canvas extent"),
    ("layer", "Polygons of a layer"),
]


def _looks_like_path(model: str) -> bool:
    """A folder rather than a Hub id ("owner/name" has exactly one slash)."""
    return (
        model.startswith((".", "/", "~", "\\"))
        or "\\" in model
        or (len(model) > 1 and model[1] == ":")
        or model.count("/") > 1
    )


class SegmentDialog(JobDialog):
    """Choose a raster, bands, area, engine and output; Run starts a background WorkerTask."""

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(iface, parent, "PaliGemma Water — map water in a raster")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
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
        self.raster_picker = RasterPicker("Raster", min_width=380, select_last=True)
        self.raster_combo = self.raster_picker.combo
        form.addRow("Raster", self.raster_picker)
        return box

    def _bands_group(self) -> QGroupBox:
        self.bands_box = BandsGroup(
            "Bands shown to the model",
            "automatic, or R,G,B band numbers like 3,2,1 (one number: grey)",
            "Green / NIR / SWIR band",
            "Band number for the water index; auto = band descriptions, then the preset",
        )
        self.preset_combo, self.bands_edit, self.green_spin, self.nir_spin, self.swir_spin = (
            self.bands_box.widgets()
        )
        return self.bands_box

    def _area_group(self) -> QGroupBox:
        box = QGroupBox("Area")
        form = QFormLayout(box)
        self.area_combo = combo_box(AREAS)
        self.area_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("Map", self.area_combo)
        self.aoi_combo = QgsMapLayerComboBox()
        self.aoi_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.selected_check = QCheckBox("Selected features only")
        form.addRow("Polygon layer", row(self.aoi_combo, self.selected_check))
        return box

    def _engine_group(self) -> QGroupBox:
        box = QGroupBox("Engine")
        form = QFormLayout(box)
        self.engine_combo = combo_box(ENGINES)
        self.engine_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("Engine", self.engine_combo)
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(KNOWN_MODELS)
        self.model_combo.setToolTip("A Hugging Face model id (downloaded once) or a local model folder")
        self.model_browse = QToolButton()
        self.model_browse.setText("…")
        self.model_browse.clicked.connect(self._browse_model)
        form.addRow("Model", row(self.model_combo, self.model_browse))
        self.model_combo.setMinimumWidth(380)
        self.vae_widget = vae_file_widget()
        form.addRow("VAE file", self.vae_widget)
        self.device_combo = combo_box(DEVICES)
        form.addRow("Device", self.device_combo)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 256)
        self.batch_spin.setSpecialValueText("Auto")  # 0: what GPU memory holds (up to 64), 8 on CPU
        self.batch_spin.setValue(0)
        self.batch_spin.setToolTip(
            "Chips per model call. Auto: as many as the GPU's free memory holds (up to 64), 8 on CPU; "
            "halved automatically if the GPU runs out of memory."
        )
        form.addRow("Batch size", self.batch_spin)
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(-1, 200)
        self.overlap_spin.setSpecialValueText("Auto")  # -1: the engine's default (32 PaliGemma, 0 index)
        self.overlap_spin.setValue(-1)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip(
            "Pixels neighbouring chips share. Auto: 32 for PaliGemma (a lake cut by a chip edge is seen "
            "whole in the next chip), 0 for the water index (its answer for a pixel does not depend on "
            "the chip around it, so overlap would only cost time)."
        )
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
    def _browse_model(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder")
        if path:
            self.model_combo.setEditText(path)

    def set_raster_file(self, path: str) -> None:
        """Offer a raster file that is not a project layer and select it."""
        self.raster_picker.set_file(path)

    def set_raster_layer(self, layer: QgsRasterLayer) -> None:
        self.raster_picker.set_layer(layer)

    def raster_path(self) -> str | None:
        return self.raster_picker.path()

    def raster_name(self) -> str:
        return self.raster_picker.name()

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

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[str]:
        """Problems that stop a run, in words the user can act on (empty when all is fine)."""
        errors: list[str] = []
        band_count = self.raster_picker.check("an input raster", errors)
        raster = self.raster_path()
        self.bands_box.check(band_count, errors)
        if self.engine() == "water-index" and band_count is not None and band_count < 2:
            errors.append(ONE_BAND_INDEX)

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
            check_vae(self.vae_widget, errors)

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
    def _aoi(self, temp_dir: Path, copies: list[LayerSnapshot]) -> str | None:
        """The job's ``aoi``; a polygon layer adds its pending copy to ``copies``."""
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
            copy = aoi_snapshot(self.aoi_combo.currentLayer(), self.selected_check.isChecked(), temp_dir)
            copies.append(copy)
            return str(copy.path)
        return None

    def build_job(self, temp_dir: Path | None = None) -> dict:
        """The worker job for the current choices (call validate() first).

        A polygon-layer area is not copied here (main thread): the job carries the pending
        copy (``LAYER_COPIES``) and its ``aoi`` names the file the WorkerTask will write.
        """
        temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        copies: list[LayerSnapshot] = []
        job = segment_job(
            self.raster_path() or "",
            str(Path(self.output_widget.filePath().strip()).expanduser()),
            engine=self.engine(),
            bands=self.bands_box.bands(),
            preset=self.bands_box.preset(),
            green=self.green_spin.value(),
            nir=self.nir_spin.value(),
            swir=self.swir_spin.value(),
            overlap=None if self.overlap_spin.value() < 0 else self.overlap_spin.value(),
            resolution=self.resolution_spin.value(),
            aoi=self._aoi(temp_dir, copies),
            min_area_m2=self.min_area_spin.value(),
            model=self.model_combo.currentText().strip(),
            vae=self.vae_widget.filePath().strip() or None,
            device=self.device_combo.currentData(),
            batch_size=self.batch_spin.value(),
            overwrite=self.overwrite_check.isChecked(),
        )
        return with_copies(job, copies)

    def task_names(self) -> tuple[str, str]:
        name = self.raster_name()
        return f"Water in {name}", name

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
        self.bands_box.save(s, p)
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
        self.raster_picker.restore(s.value(f"{p}/raster", "", type=str))
        self.bands_box.load(s, p)
        set_combo_value(self.area_combo, s.value(f"{p}/area", "raster", type=str))
        self.selected_check.setChecked(s.value(f"{p}/selected_only", False, type=bool))
        set_combo_value(self.engine_combo, s.value(f"{p}/engine", "paligemma", type=str))
        self.model_combo.setEditText(s.value(f"{p}/model", DEFAULT_MODEL, type=str) or DEFAULT_MODEL)
        self.vae_widget.setFilePath(s.value(f"{p}/vae", "", type=str))
        set_combo_value(self.device_combo, s.value(f"{p}/device", "auto", type=str))
        self.batch_spin.setValue(s.value(f"{p}/batch_size", 0, type=int))
        self.overlap_spin.setValue(s.value(f"{p}/overlap", -1, type=int))
        self.resolution_spin.setValue(s.value(f"{p}/resolution", 0.0, type=float))
        self.min_area_spin.setValue(s.value(f"{p}/min_area_m2", 0.0, type=float))
        self.output_widget.setFilePath(s.value(f"{p}/output", "", type=str))
        self.overwrite_check.setChecked(s.value(f"{p}/overwrite", False, type=bool))


def aoi_snapshot(layer: QgsVectorLayer, selected_only: bool, temp_dir: Path) -> LayerSnapshot:
    """The pending copy of a polygon layer (or its selection) to ``temp_dir/aoi.gpkg``.

    Always a copy: the worker reads every feature of the file's first layer.
    """
    return LayerSnapshot(layer, temp_dir / "aoi.gpkg", "aoi", selected_only, "the area of interest")
