"""The fields of the "Map water" dialog (dialog.py): built in code, no .ui file to keep in step.

Only the widgets: what they mean, check and send is dialog.py's. Their initial values are the
command line's defaults (core.rules, through options.py); load_settings then restores the
user's last choices.
"""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QToolButton,
)

from ..core import rules
from .more_rasters import MoreRastersField
from .options import AUTO_OVERLAP, DEVICES, ENGINES, KNOWN_MODELS
from .widgets import BandsGroup, RasterPicker, VaeField, combo_box, row

AREAS: list[tuple[str, str]] = [
    ("raster", "Whole raster"),
    ("canvas", "Current map canvas extent"),
    ("layer", "Polygons of a layer"),
]


class SegmentFields:
    """Builds the dialog's groups of fields (a mixin of SegmentDialog, which lays them out)."""

    def _input_group(self) -> QGroupBox:
        box = QGroupBox("Input")
        form = QFormLayout(box)
        self.raster_picker = RasterPicker("Raster", min_width=380, select_last=True)
        self.raster_combo = self.raster_picker.combo
        form.addRow("Raster", self.raster_picker)
        # A region: more layers, files or folders in the same run (one GeoPackage, a scenes layer).
        self.more_rasters = MoreRastersField()
        self.more_rasters.changed.connect(self._update_enabled)
        form.addRow("More rasters", self.more_rasters)
        self.engine_combo = combo_box(ENGINES)
        self.engine_combo.setToolTip(
            "Water index: NDWI/MNDWI from the green and NIR or SWIR bands, no model, seconds. "
            "PaliGemma: the vision-language model (torch; a GPU helps), from RGB."
        )
        self.engine_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("Engine", self.engine_combo)
        self._area_rows(form)
        return box

    def _model_group(self) -> QGroupBox:
        """What only the PaliGemma engine uses (hidden for the water index)."""
        self.model_box = QGroupBox("PaliGemma")
        form = QFormLayout(self.model_box)
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(KNOWN_MODELS)
        self.model_combo.setToolTip("A Hugging Face model id (downloaded once) or a local model folder")
        self.model_browse = QToolButton()
        self.model_browse.setText("…")
        self.model_browse.setToolTip("Choose a local model folder (e.g. a fine-tuned model)")
        self.model_browse.clicked.connect(self._browse_model)
        form.addRow("Model", row(self.model_combo, self.model_browse))
        self.model_combo.setMinimumWidth(380)
        self.vae_widget = VaeField()
        form.addRow("VAE file", self.vae_widget)
        self.device_combo = combo_box(DEVICES)
        form.addRow("Device", self.device_combo)
        return self.model_box

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

    def _area_rows(self, form: QFormLayout) -> None:
        """Where to map: the whole raster, the canvas extent, or the polygons of a layer."""
        self.area_form = form
        self.area_combo = combo_box(AREAS)
        self.area_combo.currentIndexChanged.connect(self._update_enabled)
        self.area_form.addRow("Area", self.area_combo)
        self.aoi_combo = QgsMapLayerComboBox()
        self.aoi_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.selected_check = QCheckBox("Selected features only")
        self.aoi_row = row(self.aoi_combo, self.selected_check)
        self.area_form.addRow("Polygon layer", self.aoi_row)

    def _output_group(self) -> QGroupBox:
        box = QGroupBox("Output")
        form = QFormLayout(box)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output_widget.setFilter("GeoPackage (*.gpkg)")
        self.output_widget.setConfirmOverwrite(False)  # the Overwrite box decides
        self.overwrite_check = QCheckBox("Overwrite an existing file")
        self.overwrite_check.setToolTip("Also replaces the old result's layers in the project")
        # One row: the dialog fits a 768-pixel screen with every row shown.
        output_row = row(self.output_widget, self.overwrite_check)
        output_row.layout().setStretch(0, 1)
        form.addRow("GeoPackage", output_row)
        return box

    def _advanced_group(self) -> QgsCollapsibleGroupBox:
        """Rarely changed options, collapsed, two per line (their defaults are the command line's)."""
        self.advanced_box = QgsCollapsibleGroupBox("Advanced")
        self.advanced_box.setObjectName("paligemmaAdvanced")
        self.advanced_box.setSaveCollapsedState(False)
        grid = QGridLayout(self.advanced_box)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 256)
        self.batch_spin.setSpecialValueText("Auto")  # 0: the engine's choice
        self.batch_spin.setValue(0)
        self.batch_spin.setToolTip(
            "Chips per model call. Auto: as many as the GPU's free memory holds (up to 64), "
            f"{rules.CPU_BATCH_SIZE} on CPU; halved automatically if the GPU runs out of memory."
        )
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(AUTO_OVERLAP, 200)
        self.overlap_spin.setSpecialValueText("Auto")  # the engine's default (rules.default_overlap)
        self.overlap_spin.setValue(AUTO_OVERLAP)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip(
            f"Pixels neighbouring chips share. Auto: {rules.default_overlap('paligemma')} for PaliGemma (a "
            "lake cut by a chip edge is seen whole in the next chip), "
            f"{rules.default_overlap('water-index')} for the water index (its answer for a pixel does not "
            "depend on the chip around it, so overlap would only cost time)."
        )
        self.resolution_spin = QDoubleSpinBox()
        self.resolution_spin.setRange(0.0, 10000.0)
        self.resolution_spin.setDecimals(2)
        self.resolution_spin.setSuffix(" m/px")
        self.resolution_spin.setSpecialValueText("native")
        self.resolution_spin.setToolTip(
            "Resample so that a 224-pixel chip covers the ground size the model sees best"
        )
        self.min_area_spin = QDoubleSpinBox()
        self.min_area_spin.setRange(0.0, 1e12)
        self.min_area_spin.setDecimals(0)
        self.min_area_spin.setSuffix(" m²")
        self.advanced_labels: dict[str, QLabel] = {}
        cells = [
            ("Chip overlap", self.overlap_spin),
            ("Min. water area", self.min_area_spin),
            ("Resolution", self.resolution_spin),
            ("Batch size", self.batch_spin),
        ]
        for i, (text, widget) in enumerate(cells):
            label = QLabel(text)
            label.setBuddy(widget)
            self.advanced_labels[text] = label
            grid.addWidget(label, i // 2, 2 * (i % 2))
            grid.addWidget(widget, i // 2, 2 * (i % 2) + 1)
        # The water index's threshold shares the Batch size cell: each engine shows its own.
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(-1.0, 1.0)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setSpecialValueText("Auto")  # -1: one per scene, chosen from its histogram
        self.threshold_spin.setValue(-1.0)
        self.threshold_spin.setToolTip(
            "Water where the index is above this value. Auto: each scene's own, from its histogram; "
            "a fixed value (e.g. 0.2) when the result warns that the water index is unsure."
        )
        label = QLabel("Threshold")
        label.setBuddy(self.threshold_spin)
        self.advanced_labels["Threshold"] = label
        grid.addWidget(label, 1, 2)
        grid.addWidget(self.threshold_spin, 1, 3)
        # Runs over several rasters (More rasters) only.
        self.dissolve_check = QCheckBox("Merge water across scenes")
        self.dissolve_check.setToolTip(
            "Also a 'water_dissolved' layer: water merged where scenes overlap (one polygon per lake)"
        )
        self.fail_fast_check = QCheckBox("Stop at the first failing scene")
        self.fail_fast_check.setToolTip(
            "By default a scene that fails is recorded in the 'scenes' layer and the run goes on"
        )
        grid.addWidget(self.dissolve_check, 2, 0, 1, 2)
        grid.addWidget(self.fail_fast_check, 2, 2, 1, 2)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.advanced_box.setCollapsed(True)
        # Expanding shows every child again: hide the other engine's options once more.
        self.advanced_box.collapsedStateChanged.connect(self._update_enabled)
        return self.advanced_box

    def _browse_model(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder")
        if path:
            self.model_combo.setEditText(path)
