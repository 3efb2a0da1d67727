"""The fields of the "Export training data" dialog (export_dialog.py), built in code.

Only the widgets; their initial values are the command line's defaults (core.rules), which
load_settings replaces with the user's last choices.
"""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QStackedWidget,
    QWidget,
)

from ..core import rules
from .options import CHIP_SIZES, EMPTY_POLICIES, LABEL_SOURCES
from .widgets import BandsGroup, RasterPicker, VaeField, combo_box, row

VECTOR_FILTER = "Vector files (*.gpkg *.shp *.geojson *.json *.fgb *.kml *.gml *.sqlite);;All files (*)"


class ExportFields:
    """Builds the export dialog's groups of fields (a mixin of ExportDialog, which lays them out)."""

    def _input_group(self) -> QGroupBox:
        """The raster and where the known water comes from."""
        box = QGroupBox("Input")
        form = QFormLayout(box)
        self.raster_picker = RasterPicker("Raster", min_width=320)
        form.addRow("Raster", self.raster_picker)
        self.labels_combo = combo_box(LABEL_SOURCES)
        self.labels_combo.currentIndexChanged.connect(self._update_enabled)
        form.addRow("Known water", self.labels_combo)
        self.labels_stack = QStackedWidget()
        # One page per source, in LABEL_SOURCES order.
        self.polygon_combo = QgsMapLayerComboBox()
        self.polygon_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.polygon_combo.setAllowEmptyLayer(True)
        self.polygon_combo.setLayer(None)
        self.polygon_selected_check = QCheckBox("Selected only")
        self.labels_stack.addWidget(row(self.polygon_combo, self.polygon_selected_check))
        self.vector_widget = QgsFileWidget()
        self.vector_widget.setFilter(VECTOR_FILTER)
        self.vector_layer_edit = QLineEdit()
        self.vector_layer_edit.setPlaceholderText("layer (optional)")
        self.vector_layer_edit.setMaximumWidth(130)
        self.labels_stack.addWidget(row(self.vector_widget, self.vector_layer_edit))
        self.mask_picker = RasterPicker("Mask raster", min_width=200)
        self.mask_threshold_spin = QDoubleSpinBox()
        self.mask_threshold_spin.setRange(-1e9, 1e9)
        self.mask_threshold_spin.setDecimals(2)
        self.mask_threshold_spin.setPrefix("water > ")
        self.mask_threshold_spin.setToolTip("Mask pixels above this value are water; nodata is unlabelled")
        self.labels_stack.addWidget(row(self.mask_picker, self.mask_threshold_spin))
        self.labels_stack.addWidget(QWidget())  # water index: nothing to choose
        self.labels_form = form
        form.addRow("Labels", self.labels_stack)
        return box

    def _bands_group(self) -> QGroupBox:
        self.bands_box = BandsGroup(
            "Chip bands (R,G,B)",
            "automatic, or R,G,B band numbers like 3,2,1",
            "Green / NIR / SWIR",
            "Band for water-index labels; auto = band descriptions, then the preset",
        )
        self.preset_combo, self.bands_edit, self.green_spin, self.nir_spin, self.swir_spin = (
            self.bands_box.widgets()
        )
        return self.bands_box

    def _chips_group(self) -> QGroupBox:
        box = QGroupBox("Chips")
        form = QFormLayout(box)
        self.size_combo = QComboBox()
        for size in CHIP_SIZES:
            self.size_combo.addItem(f"{size} px (PaliGemma …-{size})", size)
        form.addRow("Chip size", self.size_combo)
        self.vae_widget = VaeField()
        form.addRow("VAE file", self.vae_widget)
        self.valid_spin = QDoubleSpinBox()
        self.valid_spin.setRange(0.0, 0.9)
        self.valid_spin.setSingleStep(0.05)
        self.valid_spin.setValue(rules.EXPORT_VALID_FRACTION)
        self.valid_spin.setToolTip("Share of the chips kept for validation, by whole spatial blocks")
        form.addRow("Validation share", self.valid_spin)
        self.empty_combo = combo_box(EMPTY_POLICIES)
        self.empty_combo.currentIndexChanged.connect(self._update_enabled)
        self.empty_cap_spin = QDoubleSpinBox()
        self.empty_cap_spin.setRange(0.0, 1.0)
        self.empty_cap_spin.setSingleStep(0.05)
        self.empty_cap_spin.setValue(rules.EMPTY_CAP)
        self.empty_cap_spin.setToolTip("Chips without water make at most this share of each split")
        form.addRow("Chips without water", row(self.empty_combo, self.empty_cap_spin))
        return box

    def _output_group(self) -> QGroupBox:
        box = QGroupBox("Output")
        form = QFormLayout(box)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.overwrite_check = QCheckBox("Replace an earlier export")
        self.overwrite_check.setToolTip(
            "Replace an earlier export in this folder (only an export is replaced)"
        )
        form.addRow("Folder", row(self.output_widget, self.overwrite_check))
        return box

    def _advanced_group(self) -> QgsCollapsibleGroupBox:
        """Rarely changed options, collapsed, two per line (their defaults are the command line's)."""
        box = QgsCollapsibleGroupBox("Advanced")
        box.setObjectName("paligemmaExportAdvanced")
        box.setSaveCollapsedState(False)
        grid = QGridLayout(box)
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 400)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip("Overlapping training chips next to a validation chip are left out")
        self.resolution_spin = QDoubleSpinBox()
        self.resolution_spin.setRange(0.0, 10000.0)
        self.resolution_spin.setDecimals(2)
        self.resolution_spin.setSuffix(" m/px")
        self.resolution_spin.setSpecialValueText("native")
        self.min_pixels_spin = QSpinBox()
        self.min_pixels_spin.setRange(1, 1_000_000)
        self.min_pixels_spin.setValue(rules.EXPORT_MIN_OBJECT_PIXELS)
        self.min_pixels_spin.setSuffix(" px")
        self.min_pixels_spin.setToolTip("Smaller water objects are not written (each costs ~24 tokens)")
        self.block_spin = QSpinBox()
        self.block_spin.setRange(1, 1000)
        self.block_spin.setValue(rules.EXPORT_BLOCK_SIZE)
        self.block_spin.setSuffix(" chips")
        self.block_spin.setToolTip("Whole blocks of chips go to train or valid, so neighbours do not leak")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2_147_483_647)
        cells = [
            ("Chip overlap", self.overlap_spin),
            ("Target resolution", self.resolution_spin),
            ("Smallest water object", self.min_pixels_spin),
            ("Spatial block side", self.block_spin),
            ("Random seed", self.seed_spin),
        ]
        for i, (text, widget) in enumerate(cells):  # two a line: the dialog fits a laptop screen
            label = QLabel(text)
            label.setBuddy(widget)
            grid.addWidget(label, i // 2, 2 * (i % 2))
            grid.addWidget(widget, i // 2, 2 * (i % 2) + 1)
        self.allow_custom_check = QCheckBox("Accept a VAE that is not Google's vae-oid.npz")
        grid.addWidget(self.allow_custom_check, 3, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        box.setCollapsed(True)
        self.advanced_box = box
        return box
