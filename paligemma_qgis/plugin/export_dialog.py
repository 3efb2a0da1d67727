"""The "Export training data" dialog: raster + known water -> PaliGemma fine-tuning chips.

Same pattern as the "Map water" dialog: it checks the choices before anything starts
(messages in its own message bar), remembers them in QgsSettings, and hands a plain JSON
job (``{"task": "export", ...}``, read by core.train.export.ExportOptions) to a WorkerTask, which
adds ``chips`` and ``review`` of OUT_DIR/chips.gpkg when the export succeeds. Checks, job and
settings are here, the fields in export_fields.py; defaults are core.rules'.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import (
    QDialogButtonBox,
    QVBoxLayout,
    QWidget,
)

from ..core import rules
from .band_roles import band_descriptions, roles_needed
from .error_text import EXPORT_DIALOG
from .export_fields import ExportFields
from .job_dialog import JobDialog
from .layers import LayerSnapshot, with_copies
from .options import WATER_INDEX_LABELS, export_job
from .raster_probe import raster_facts
from .run_text import export_name
from .widgets import (
    ONE_BAND_INDEX,
    check_vae,
    set_combo_value,
    set_row_visible,
)
from .worker_env import SETTINGS_GROUP

SETTINGS_PREFIX = f"{SETTINGS_GROUP}/export"
# What an export folder holds (core.train.export.outputs._EXPORT_MARKERS): only such a folder is replaced.
EXPORT_MARKERS = ("train.jsonl", "valid.jsonl", "images", "chips.gpkg", "export.json")


class ExportDialog(ExportFields, JobDialog):
    """Raster + known water -> chips, train/valid JSONL and chips.gpkg for review (core.train.export)."""

    ERROR_TITLE = "Cannot export"
    FRONT = EXPORT_DIALOG

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__(iface, parent, "PaliGemma Water — export training data")
        self.setMinimumWidth(600)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        body = self.body(layout)  # the fields scroll when they are taller than a laptop screen
        body.addWidget(self._input_group())
        body.addWidget(self._bands_group())
        body.addWidget(self._chips_group())
        body.addWidget(self._output_group())
        body.addWidget(self._advanced_group())
        body.addStretch(1)
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.setup_button = self.buttons.addButton("Worker setup…", QDialogButtonBox.ButtonRole.HelpRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self.run)
        self.buttons.rejected.connect(self.reject)
        self.setup_button.clicked.connect(self.open_setup)
        layout.addWidget(self.buttons)
        self.load_settings()
        self._update_enabled()

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
        set_row_visible(self.bands_box.form, self.bands_box.index_row, water_index)
        QTimer.singleShot(0, self.fit)
        self.empty_cap_spin.setEnabled(self.empty_combo.currentData() == "cap")

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[str]:
        """Problems that stop an export, in words the user can act on (empty when all is fine)."""
        errors: list[str] = []
        band_count = self.raster_picker.check("the input raster", errors)
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
                elif probe.geometryType() != QgsWkbTypes.GeometryType.PolygonGeometry:
                    errors.append(
                        f"{path}: the labels must be polygons (areas of water), not points or lines."
                    )
                inputs.append(str(Path(path).expanduser()))
        elif source == "mask":
            if self.mask_picker.check("the mask raster", errors) is not None:
                inputs.append(self.mask_picker.path())
        elif band_count is not None and band_count < 2:
            errors.append(ONE_BAND_INDEX)

        self.bands_box.check(band_count, errors, index_bands=source == WATER_INDEX_LABELS)
        check_vae(self.vae_widget, errors)
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
    def _labels(self, temp_dir: Path, copies: list[LayerSnapshot]) -> tuple[str, str | None]:
        """(labels for ExportOptions, label layer name); a layer copy still to write goes to ``copies``."""
        source = self.labels_source()
        if source == "layer":
            labels, label_layer, copy = polygon_labels(
                self.polygon_combo.currentLayer(), self.polygon_selected_check.isChecked(), temp_dir
            )
            copies += [copy] if copy is not None else []
            return labels, label_layer
        if source == "vector":
            return (
                str(Path(self.vector_widget.filePath().strip()).expanduser()),
                self.vector_layer_edit.text().strip() or None,
            )
        if source == "mask":
            return self.mask_picker.path() or "", None
        return WATER_INDEX_LABELS, None

    def build_job(self, temp_dir: Path | None = None) -> dict:
        """The worker job for the current choices (call validate() first).

        Polygons that need a copy are not copied here (main thread): the job carries the
        pending copy (``LAYER_COPIES``) and ``labels`` names the file the WorkerTask will write.
        """
        temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="paligemma_qgis_"))
        copies: list[LayerSnapshot] = []
        labels, label_layer = self._labels(temp_dir, copies)
        water_index = self.labels_source() == WATER_INDEX_LABELS
        job = export_job(
            self.raster_picker.path() or "",
            str(Path(self.output_widget.filePath().strip()).expanduser()),
            labels,
            label_layer=label_layer,
            bands=self.bands_box.bands(),
            preset=self.bands_box.preset(),
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
        return with_copies(job, copies)

    def task_names(self) -> tuple[str, str]:
        name = export_name(self.raster_picker.name())
        return name, name

    def probe_engine(self) -> tuple[str, str | None, str | None]:
        return "export", None, self.vae_widget.filePath().strip() or None

    def band_question(self) -> tuple[QgsRasterLayer | None, list[str]]:
        """The chips' R,G,B (4 bands or more) and, for water-index labels, the NIR or SWIR band."""
        layer = self.raster_picker.layer()
        if layer is not None:
            source, bands, descriptions = layer, layer.bandCount(), band_descriptions(layer)
        else:
            path = self.raster_picker.path()
            facts = raster_facts(path) if path else None  # read without writing a .aux.xml beside it
            if facts is None:
                return None, []
            source, bands, descriptions = path, facts.bands, list(facts.descriptions)
        args = (bands, descriptions, self.bands_box.preset(), self.bands_box.bands())
        spins = {
            "green": self.green_spin.value(),
            "nir": self.nir_spin.value(),
            "swir": self.swir_spin.value(),
        }
        roles = roles_needed("rgb", *args, spins)
        if self.labels_source() == WATER_INDEX_LABELS:
            roles += [r for r in roles_needed("water-index", *args, spins) if r not in roles]
        return source, roles

    def apply_bands(self, roles: dict[str, int], preset: str | None = None) -> None:
        self.bands_box.apply_roles(roles, preset)

    def open_setup(self) -> None:
        from .setup_check import SetupCheckDialog

        SetupCheckDialog(vae=self.vae_widget.filePath().strip() or None, parent=self).exec()

    # ------------------------------------------------------------------ settings
    def save_settings(self) -> None:
        s = QgsSettings()
        p = SETTINGS_PREFIX
        s.setValue(f"{p}/raster", self.raster_picker.path() or "")
        s.setValue(f"{p}/raster_layer", self.raster_picker.layer_id())
        s.setValue(f"{p}/labels_source", self.labels_source())
        layer = self.polygon_combo.currentLayer()
        s.setValue(f"{p}/polygon_layer", layer.id() if layer is not None else "")
        s.setValue(f"{p}/selected_only", self.polygon_selected_check.isChecked())
        s.setValue(f"{p}/vector_file", self.vector_widget.filePath().strip())
        s.setValue(f"{p}/vector_layer", self.vector_layer_edit.text().strip())
        s.setValue(f"{p}/mask", self.mask_picker.path() or "")
        s.setValue(f"{p}/mask_threshold", self.mask_threshold_spin.value())
        self.bands_box.save(s, p)
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
        self.raster_picker.restore(
            s.value(f"{p}/raster", "", type=str), s.value(f"{p}/raster_layer", "", type=str)
        )
        set_combo_value(self.labels_combo, s.value(f"{p}/labels_source", "layer", type=str))
        layer = QgsProject.instance().mapLayer(s.value(f"{p}/polygon_layer", "", type=str) or "")
        if isinstance(layer, QgsVectorLayer):
            self.polygon_combo.setLayer(layer)
        self.polygon_selected_check.setChecked(s.value(f"{p}/selected_only", False, type=bool))
        self.vector_widget.setFilePath(s.value(f"{p}/vector_file", "", type=str))
        self.vector_layer_edit.setText(s.value(f"{p}/vector_layer", "", type=str))
        self.mask_picker.restore(s.value(f"{p}/mask", "", type=str))
        self.mask_threshold_spin.setValue(s.value(f"{p}/mask_threshold", 0.0, type=float))
        self.bands_box.load(s, p)
        index = self.size_combo.findData(s.value(f"{p}/size", rules.CHIP_SIZE, type=int))
        self.size_combo.setCurrentIndex(max(index, 0))
        self.overlap_spin.setValue(s.value(f"{p}/overlap", 0, type=int))
        self.resolution_spin.setValue(s.value(f"{p}/resolution", 0.0, type=float))
        self.min_pixels_spin.setValue(
            s.value(f"{p}/min_object_pixels", rules.EXPORT_MIN_OBJECT_PIXELS, type=int)
        )
        self.vae_widget.setFilePath(s.value(f"{p}/vae", "", type=str))
        self.allow_custom_check.setChecked(s.value(f"{p}/allow_custom_vae", False, type=bool))
        self.valid_spin.setValue(s.value(f"{p}/valid_fraction", rules.EXPORT_VALID_FRACTION, type=float))
        self.block_spin.setValue(s.value(f"{p}/block_size", rules.EXPORT_BLOCK_SIZE, type=int))
        self.seed_spin.setValue(s.value(f"{p}/seed", 0, type=int))
        set_combo_value(self.empty_combo, s.value(f"{p}/empty_policy", rules.EXPORT_EMPTY_POLICY, type=str))
        self.empty_cap_spin.setValue(s.value(f"{p}/empty_cap", rules.EMPTY_CAP, type=float))
        self.output_widget.setFilePath(s.value(f"{p}/output", "", type=str))
        self.overwrite_check.setChecked(s.value(f"{p}/overwrite", False, type=bool))


def polygon_labels(
    layer: QgsVectorLayer, selected_only: bool, temp_dir: Path
) -> tuple[str, str | None, LayerSnapshot | None]:
    """(file, layer name, pending copy or None) the worker reads for a polygon layer of the project.

    A plain file-backed layer is read in place (no copy); a selection, a filtered, in-memory
    or database layer gets a pending copy to ``temp_dir/labels.gpkg`` (removed after the run),
    which the WorkerTask writes off the main thread.
    """
    if layer.providerType() == "ogr" and not layer.subsetString() and not selected_only:
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = parts.get("path") or ""
        if path and Path(path).is_file():
            return path, parts.get("layerName") or None, None
    copy = LayerSnapshot(layer, temp_dir / "labels.gpkg", "labels", selected_only, "the known water")
    return str(copy.path), copy.layer_name, copy
