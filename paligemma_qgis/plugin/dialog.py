"""The "Map water" dialog: what its fields mean, checked, sent and remembered.

It collects choices, checks them before anything starts (messages appear in the dialog's
own message bar), remembers them in QgsSettings, and hands a plain JSON job to a
WorkerTask. It never imports the core's heavy modules: the worker validates the rest.
Checks, job and settings stay in one file because they name the same fields; the fields
themselves are built in dialog_fields.py (what Run does around it is job_dialog's, the More
rasters list is more_rasters'). Defaults are core.rules', as the command line's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsApplication,  # noqa: F401 - tests reach the task manager through this module
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDialogButtonBox, QVBoxLayout, QWidget

from .band_roles import band_descriptions, roles_needed
from .dialog_fields import SegmentFields
from .job_dialog import JobDialog
from .layers import LayerSnapshot, with_copies
from .options import AUTO_OVERLAP, DEFAULT_DEVICE, DEFAULT_ENGINE, DEFAULT_MODEL, segment_job
from .raster_probe import raster_facts
from .run_text import region_name, single_name
from .widgets import ONE_BAND_INDEX, check_vae, set_combo_value, set_row_visible
from .worker_env import SETTINGS_GROUP, executor, ray_address

SETTINGS_PREFIX = f"{SETTINGS_GROUP}/dialog"


def _looks_like_path(model: str) -> bool:
    """A folder rather than a Hub id ("owner/name" has exactly one slash)."""
    return (
        model.startswith((".", "/", "~", "\\"))
        or "\\" in model
        or (len(model) > 1 and model[1] == ":")
        or model.count("/") > 1
    )


class SegmentDialog(SegmentFields, JobDialog):
    """Choose a raster, engine, bands, area and output; Run starts a background WorkerTask.

    Fits a 1366x768 screen: options of the other engine are hidden, the rarely changed ones
    sit in a collapsed "Advanced" box, and the defaults are the command line's.
    """

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(iface, parent, "PaliGemma Water — map water in a raster")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        body = self.body(layout)  # the fields scroll when they are taller than a laptop screen
        body.addWidget(self._input_group())
        body.addWidget(self._model_group())
        body.addWidget(self._bands_group())
        body.addWidget(self._output_group())
        body.addWidget(self._advanced_group())
        body.addStretch(1)
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton("Run", QDialogButtonBox.ButtonRole.AcceptRole)
        self.setup_button = self.buttons.addButton("Worker setup…", QDialogButtonBox.ButtonRole.HelpRole)
        self.export_button = self.buttons.addButton("Training data…", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setToolTip("Export chips + known water as PaliGemma fine-tuning data")
        self.export_requested = False
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self.run)
        self.buttons.rejected.connect(self.reject)
        self.setup_button.clicked.connect(self.open_setup)
        self.export_button.clicked.connect(self.open_export)
        layout.addWidget(self.buttons)
        self.load_settings()
        self._update_enabled()

    # ------------------------------------------------------------------ helpers
    def set_raster_file(self, path: str) -> None:
        """Offer a raster file that is not a project layer and select it."""
        self.raster_picker.set_file(path)

    def set_raster_layer(self, layer: QgsRasterLayer) -> None:
        self.raster_picker.set_layer(layer)

    def raster_path(self) -> str | None:
        return self.raster_picker.path()

    def raster_name(self) -> str:
        return self.raster_picker.name()

    def inputs(self) -> list[str]:
        """What the run maps: the raster, then More rasters (files, /vsi paths, folders, lists)."""
        main = self.raster_path()
        paths = ([main] if main else []) + [e.path for e in self.more_rasters.entries()]
        return list(dict.fromkeys(paths))

    def is_region(self) -> bool:
        """More than the one raster: a region run (a scenes layer, Merge and Stop options)."""
        return bool(self.more_rasters.entries())

    def engine(self) -> str:
        return self.engine_combo.currentData()

    def area(self) -> str:
        return self.area_combo.currentData()

    def _update_enabled(self) -> None:
        """Show what the chosen engine and area use, hide the rest (and let the dialog shrink)."""
        paligemma = self.engine() == "paligemma"
        self.model_box.setVisible(paligemma)
        set_row_visible(self.bands_box.form, self.bands_edit, paligemma)
        set_row_visible(self.bands_box.form, self.bands_box.index_row, not paligemma)
        if not self.advanced_box.isCollapsed():
            self.batch_spin.setVisible(paligemma)
            self.advanced_labels["Batch size"].setVisible(paligemma)
            self.threshold_spin.setVisible(not paligemma)
            self.advanced_labels["Threshold"].setVisible(not paligemma)
        self.more_rasters.set_engine(self.engine())
        self.dissolve_check.setEnabled(self.is_region())
        self.fail_fast_check.setEnabled(self.is_region())
        on_layer = self.area() == "layer"
        set_row_visible(self.area_form, self.aoi_row, on_layer)
        self.aoi_combo.setEnabled(on_layer)
        self.selected_check.setEnabled(on_layer)
        QTimer.singleShot(0, self.fit)

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[str]:
        """Problems that stop a run, in words the user can act on (empty when all is fine)."""
        errors: list[str] = []
        extras = self.more_rasters.entries()
        band_count = None
        if not extras or self.raster_picker.layer() is not None or self.raster_combo.currentText():
            band_count = self.raster_picker.check("an input raster", errors)
        self.more_rasters.check(errors)
        # Bands are checked against the raster with the fewest (a folder's rasters: by the worker).
        counts = [(self.raster_name(), band_count)] if band_count is not None else []
        counts += [(entry.name, entry.bands) for entry in extras if entry.bands]
        name, fewest = min(counts, key=lambda c: c[1]) if counts else ("the raster", None)
        water_index = self.engine() == "water-index"
        self.bands_box.check(
            fewest,
            errors,
            index_bands=water_index,
            rgb=not water_index,
            raster=name if extras else "the raster",
        )
        if water_index and fewest is not None and fewest < 2:
            errors.append(
                f"{name}: the water index needs a green band and a NIR or SWIR band, and this raster has "
                "one band: remove it from More rasters."
                if extras
                else ONE_BAND_INDEX
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
            elif any(not p.startswith("/vsi") and out.resolve() == Path(p).resolve() for p in self.inputs()):
                errors.append(f"{output}: the output would replace an input raster.")
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
        water_index = self.engine() == "water-index"
        region = self.is_region()
        job = segment_job(
            self.inputs() if region else (self.raster_path() or ""),
            str(Path(self.output_widget.filePath().strip()).expanduser()),
            engine=self.engine(),
            bands=self.bands_box.bands() if not water_index else None,  # only what the dialog shows
            preset=self.bands_box.preset(),
            green=self.green_spin.value() if water_index else None,
            nir=self.nir_spin.value() if water_index else None,
            swir=self.swir_spin.value() if water_index else None,
            overlap=None if self.overlap_spin.value() == AUTO_OVERLAP else self.overlap_spin.value(),
            resolution=self.resolution_spin.value(),
            aoi=self._aoi(temp_dir, copies),
            min_area_m2=self.min_area_spin.value(),
            model=self.model_combo.currentText().strip(),
            vae=self.vae_widget.filePath().strip() or None,
            device=self.device_combo.currentData(),
            batch_size=self.batch_spin.value(),
            overwrite=self.overwrite_check.isChecked(),
            fail_fast=region and self.fail_fast_check.isChecked(),
            dissolve=region and self.dissolve_check.isChecked(),
            ray_address=ray_address(),  # Worker setup's: empty runs in the worker
            threshold=self.threshold_spin.value() if self.threshold_spin.value() > -1.0 else None,
        )
        return with_copies(job, copies)

    def task_names(self) -> tuple[str, str | None]:
        """("Water in lakes", "Water in lakes"); a region run: "Water in 5 rasters" (the group is named
        from the run's summary: what a folder held, what failed)."""
        if not self.is_region():
            name = single_name(self.raster_name())
            return name, name
        extras = self.more_rasters.entries()
        expanding = [entry.name for entry in extras if entry.expands]
        counted = len(self.inputs()) - len(expanding)
        if not expanding:
            return region_name(counted), None
        parts = ([f"{counted} raster{'s' if counted != 1 else ''}"] if counted else []) + expanding
        return "Water in " + " and ".join(parts), None

    def probe_executor(self) -> str:
        return executor()

    def probe_engine(self) -> tuple[str, str | None, str | None]:
        if self.engine() != "paligemma":
            return self.engine(), None, None
        return (
            "paligemma",
            self.model_combo.currentText().strip() or None,
            self.vae_widget.filePath().strip() or None,
        )

    def band_question(self) -> tuple[QgsRasterLayer | None, list[str]]:
        """Ask for the bands when the engine needs roles that neither the raster nor the dialog gives."""
        layer = self.raster_picker.layer()
        if layer is not None:
            source, bands, descriptions = layer, layer.bandCount(), band_descriptions(layer)
        else:  # a file, or (a region without the main raster) the first raster of the list
            files = [e.path for e in self.more_rasters.entries() if e.bands]
            path = self.raster_path() or (files[0] if files else None)
            facts = raster_facts(path) if path else None  # read without writing a .aux.xml beside it
            if facts is None:
                return None, []
            source, bands, descriptions = path, facts.bands, list(facts.descriptions)
        roles = roles_needed(
            "water-index" if self.engine() == "water-index" else "rgb",
            bands,
            descriptions,
            self.bands_box.preset(),
            self.bands_box.bands(),
            {"green": self.green_spin.value(), "nir": self.nir_spin.value(), "swir": self.swir_spin.value()},
        )
        return source, roles

    def apply_bands(self, roles: dict[str, int], preset: str | None = None) -> None:
        self.bands_box.apply_roles(roles, preset)

    def use_water_index(self) -> bool:
        set_combo_value(self.engine_combo, "water-index")
        return self.engine() == "water-index"

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
        ).exec()

    # ------------------------------------------------------------------ settings
    def save_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        s.setValue(f"{p}/raster", self.raster_path() or "")
        s.setValue(f"{p}/raster_layer", self.raster_picker.layer_id())
        self.bands_box.save(s, p)
        s.setValue(f"{p}/threshold", self.threshold_spin.value())
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
        s.setValue(f"{p}/more_rasters", self.more_rasters.to_setting())
        s.setValue(f"{p}/dissolve", self.dissolve_check.isChecked())
        s.setValue(f"{p}/fail_fast", self.fail_fast_check.isChecked())

    def load_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        self.raster_picker.restore(
            s.value(f"{p}/raster", "", type=str), s.value(f"{p}/raster_layer", "", type=str)
        )
        self.bands_box.load(s, p)
        self.threshold_spin.setValue(s.value(f"{p}/threshold", -1.0, type=float))
        set_combo_value(self.area_combo, s.value(f"{p}/area", "raster", type=str))
        self.selected_check.setChecked(s.value(f"{p}/selected_only", False, type=bool))
        set_combo_value(self.engine_combo, s.value(f"{p}/engine", DEFAULT_ENGINE, type=str))
        self.model_combo.setEditText(s.value(f"{p}/model", DEFAULT_MODEL, type=str) or DEFAULT_MODEL)
        self.vae_widget.setFilePath(s.value(f"{p}/vae", "", type=str))
        set_combo_value(self.device_combo, s.value(f"{p}/device", DEFAULT_DEVICE, type=str))
        self.batch_spin.setValue(s.value(f"{p}/batch_size", 0, type=int))
        self.overlap_spin.setValue(s.value(f"{p}/overlap", AUTO_OVERLAP, type=int))
        self.resolution_spin.setValue(s.value(f"{p}/resolution", 0.0, type=float))
        self.min_area_spin.setValue(s.value(f"{p}/min_area_m2", 0.0, type=float))
        self.output_widget.setFilePath(s.value(f"{p}/output", "", type=str))
        self.overwrite_check.setChecked(s.value(f"{p}/overwrite", False, type=bool))
        self.more_rasters.restore(s.value(f"{p}/more_rasters", "", type=str))
        self.dissolve_check.setChecked(s.value(f"{p}/dissolve", False, type=bool))
        self.fail_fast_check.setChecked(s.value(f"{p}/fail_fast", False, type=bool))


def aoi_snapshot(layer: QgsVectorLayer, selected_only: bool, temp_dir: Path) -> LayerSnapshot:
    """The pending copy of a polygon layer (or its selection) to ``temp_dir/aoi.gpkg``.

    Always a copy: the worker reads every feature of the file's first layer.
    """
    return LayerSnapshot(layer, temp_dir / "aoi.gpkg", "aoi", selected_only, "the area of interest")
