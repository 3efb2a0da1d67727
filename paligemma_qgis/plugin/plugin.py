"""The QGIS plugin object: a toolbar button, Raster-menu entries and the Processing provider.

Start-up stays cheap: this module imports QGIS and the plugin's small modules only; the
heavy work (rasterio, torch, transformers) lives in the worker process.
"""

from __future__ import annotations

import contextlib

from qgis.core import QgsApplication, QgsRasterLayer
from qgis.PyQt.QtGui import QIcon

try:  # Qt6 (QGIS 4) has QAction in QtGui; Qt5 (QGIS 3) in QtWidgets
    from qgis.PyQt.QtGui import QAction
except ImportError:
    from qgis.PyQt.QtWidgets import QAction

from .resources import icon_path

MENU = "PaliGemma &Water"
TOOLBAR_NAME = "PaliGemma Water"
TOOLBAR_OBJECT = "PaliGemmaWaterToolbar"


class PaliGemmaPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.toolbar = None
        self.actions: list[QAction] = []
        self.tasks: list = []  # running tasks, kept referenced until they end
        self.opened: set[str] = set()  # dialogs opened in this session (the first takes the active layer)

    # Processing only (qgis_process calls this without initGui).
    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        if self.provider is None:
            from .provider import PaliGemmaProvider

            self.provider = PaliGemmaProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        path = icon_path()
        icon = QIcon(str(path)) if path else QIcon()
        parent = self.iface.mainWindow()
        self.run_action = QAction(icon, "Map water with PaliGemma…", parent)
        self.run_action.setObjectName("paligemmaMapWater")
        self.run_action.setToolTip("Map water bodies in a raster with PaliGemma or a water index")
        self.run_action.triggered.connect(self.show_dialog)
        self.export_action = QAction("Export training data…", parent)
        self.export_action.setObjectName("paligemmaExportTrainingData")
        self.export_action.setToolTip("Chips + known water -> PaliGemma fine-tuning JSONL")
        self.export_action.triggered.connect(self.show_export)
        self.setup_action = QAction("Worker setup…", parent)
        self.setup_action.setObjectName("paligemmaWorkerSetup")
        self.setup_action.triggered.connect(self.show_setup)
        self.actions = [self.run_action, self.export_action, self.setup_action]
        self.toolbar = self.iface.addToolBar(TOOLBAR_NAME)
        self.toolbar.setObjectName(TOOLBAR_OBJECT)
        self.toolbar.addAction(self.run_action)
        for action in self.actions:
            self.iface.addPluginToRasterMenu(MENU, action)

    def unload(self) -> None:
        # A run outliving its plugin would add layers from unloaded code, and an update may
        # replace the files its worker imports: stop it (the task cleans up its output).
        for task in list(self.tasks):
            with contextlib.suppress(RuntimeError):  # the C++ task is already gone
                task.cancel()
        from .first_run import cancel_pending

        cancel_pending()  # a setup and the run waiting for it
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.clear()
            main_window = self.iface.mainWindow()
            if main_window is not None:
                main_window.removeToolBar(self.toolbar)
            self.toolbar.setParent(None)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def _preselect(self, picker, which: str, layer=None) -> None:
        """The dialog keeps its remembered raster; the active layer (or ``layer``) is chosen on the
        first opening in this session, or when the remembered one is gone."""
        first = which not in self.opened
        self.opened.add(which)
        layer = layer if isinstance(layer, QgsRasterLayer) else None
        active = self.iface.activeLayer()
        if layer is None and (first or not picker.has_choice()) and isinstance(active, QgsRasterLayer):
            layer = active
        if layer is not None:
            picker.set_layer(layer)

    def show_dialog(self) -> None:
        from .dialog import SegmentDialog

        dialog = SegmentDialog(self.iface)
        self._preselect(dialog.raster_picker, "segment")
        if dialog.exec() and dialog.task is not None:
            self._keep(dialog.task)
        if dialog.export_requested:
            self.show_export(dialog.raster_combo.currentLayer())

    def show_export(self, layer=None) -> None:
        from .export_dialog import ExportDialog

        dialog = ExportDialog(self.iface)
        self._preselect(dialog.raster_picker, "export", layer)
        if dialog.exec() and dialog.task is not None:
            self._keep(dialog.task)

    def show_setup(self) -> None:
        from .setup_check import SetupCheckDialog

        SetupCheckDialog(parent=self.iface.mainWindow()).exec()

    def _keep(self, task) -> None:
        self.tasks.append(task)

        def forget(*_args) -> None:
            if task in self.tasks:
                self.tasks.remove(task)

        task.taskCompleted.connect(forget)
        task.taskTerminated.connect(forget)
