"""More rasters for one "Map water" run: project layers, files and folders beside the main raster.

One row of the dialog (``MoreRastersField``: a button and a count) opens a small list editor
(``MoreRastersDialog``). A run over several inputs is a region run: one GeoPackage with every
scene's water and a ``scenes`` layer. What can be checked here without reading pixels is
checked here (the file is there, a layer's band count); a folder's rasters, a list of paths
and a STAC file are expanded and checked by the worker, which reports each failing scene.
Band counts of files are read once, when they are added, never at Run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.rules import RASTER_SUFFIXES
from .options import gdal_path
from .raster_probe import raster_facts

FILES_FILTER = (
    "Rasters, lists of paths, STAC items (*.tif *.tiff *.vrt *.img *.jp2 *.txt *.json);;All files (*)"
)
FOLDER_PROBE_LIMIT = 500  # rasters of a folder checked when it is added (headers only: milliseconds each)
# What is wrong with a raster, by code (a folder keeps codes, the words follow the engine).
ISSUES = {
    "unreadable": "GDAL cannot open it as a raster",
    "no_crs": "it has no CRS (coordinate reference system), so its water cannot be placed on the map",
    "one_band": "it has one band: the water index needs a green and a NIR or SWIR band",
}
MARK = "⚠ "


@dataclass(frozen=True)
class RasterEntry:
    """One input beside the main raster: ``kind`` is "layer", "file" or "folder".

    What was checked when it was added: ``bands`` and ``crs`` of a layer or raster file (None:
    not known, the worker reads it), and for a folder its ``rasters`` and their ``issues``
    ((file name, code of ISSUES)), so that problems show before Run.
    """

    kind: str
    path: str  # what the worker opens: a file, a /vsi path, a folder, a list or STAC file
    name: str
    bands: int | None = None
    crs: bool | None = None
    rasters: int | None = None
    issues: tuple[tuple[str, str], ...] = ()

    @property
    def expands(self) -> bool:
        """A folder, list or STAC file: its scenes are known only to the worker."""
        if self.kind == "folder":
            return True
        return not self.path.startswith("/vsi") and not self.path.lower().endswith(RASTER_SUFFIXES)

    def problems(self, engine: str) -> list[str]:
        """What will make its scenes fail with ``engine``, in words (empty: nothing known)."""
        if self.kind == "folder":
            if self.rasters == 0:
                return [f"the folder holds no raster ({', '.join(RASTER_SUFFIXES[:4])}, …)"]
            named = [(n, c) for n, c in self.issues if c != "one_band" or engine == "water-index"]
            return [f"{name}: {ISSUES.get(code, code)}" for name, code in named]
        found = []
        if self.crs is False:
            found.append(ISSUES["no_crs"])
        if engine == "water-index" and self.bands == 1:
            found.append(ISSUES["one_band"])
        return found


def _issues(bands: int | None, crs: bool | None) -> list[str]:
    return (["no_crs"] if crs is False else []) + (["one_band"] if bands == 1 else [])


def layer_entry(layer: QgsRasterLayer) -> RasterEntry | str:
    """The entry of a project raster layer, or why it cannot be one (a web or in-memory raster)."""
    path = gdal_path(layer)
    if path is None:
        return f"{layer.name()}: not a raster file (web and in-memory rasters cannot be read by the worker)"
    return RasterEntry("layer", path, layer.name(), layer.bandCount(), layer.crs().isValid())


def file_entry(path: str) -> RasterEntry | str:
    """The entry of a file (its header read once, here, without side files), or what is wrong with it."""
    file = Path(path)
    if not file.is_file():
        return f"{path}: file not found"
    if not path.lower().endswith(RASTER_SUFFIXES):
        return RasterEntry("file", path, file.name)  # a list of paths or a STAC file
    facts = raster_facts(path)
    if facts is None:
        return f"{path}: GDAL cannot open this file as a raster"
    return RasterEntry("file", path, file.stem, facts.bands, facts.crs)


def folder_entry(path: str) -> RasterEntry | str:
    """A folder's entry, its rasters' headers checked (the first FOLDER_PROBE_LIMIT)."""
    folder = Path(path)
    if not folder.is_dir():
        return f"{path}: folder not found"
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(RASTER_SUFFIXES))
    issues: list[tuple[str, str]] = []
    for file in files[:FOLDER_PROBE_LIMIT]:
        facts = raster_facts(str(file))
        codes = ["unreadable"] if facts is None else _issues(facts.bands, facts.crs)
        issues += [(file.name, code) for code in codes]
    return RasterEntry("folder", path, folder.name or path, rasters=len(files), issues=tuple(issues))


def describe(entries: list[RasterEntry], engine: str = "water-index") -> str:
    """'none: the raster above only' or '+4: 2 layers, 1 file, 1 folder' (the count label), and
    how many of them have problems."""
    if not entries:
        return "none: only the raster above"
    counts = {}
    for entry in entries:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
    words = {"layer": "layer", "file": "file", "folder": "folder"}
    parts = [f"{n} {words[kind]}{'s' if n != 1 else ''}" for kind, n in counts.items()]
    marked = sum(1 for entry in entries if entry.problems(engine))
    problems = f" · {MARK}{marked} with problems" if marked else ""
    return f"+{len(entries)}: {', '.join(parts)}{problems}"


class MoreRastersDialog(QDialog):
    """The list of more rasters: add project layers, files or a folder; remove; OK keeps it."""

    def __init__(
        self, entries: list[RasterEntry], parent: QWidget | None = None, engine: str = "water-index"
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.setWindowTitle("PaliGemma Water — more rasters")
        self.setMinimumWidth(600)
        self._entries: list[RasterEntry] = []
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Mapped with the raster of the dialog in one run: one GeoPackage with every scene's water "
            "and a 'scenes' layer. A folder adds its rasters; a .txt file lists paths (one a line); a "
            "STAC .json adds its items. Rasters may differ in CRS and size; the bands follow the dialog."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        layout.addWidget(self.list, 1)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #cf222e")
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)  # paths are user data, never HTML
        self.problem_label.hide()
        layout.addWidget(self.problem_label)
        buttons_row = QHBoxLayout()
        self.layers_button = QToolButton()
        self.layers_button.setText("Project layers")
        self.layers_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.layers_menu = QMenu(self.layers_button)
        self.layers_menu.aboutToShow.connect(self._fill_layers_menu)
        self.layers_button.setMenu(self.layers_menu)
        self.files_button = QPushButton("Files…")
        self.files_button.clicked.connect(self._browse_files)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.clicked.connect(self._browse_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        for button in (self.layers_button, self.files_button, self.folder_button):
            buttons_row.addWidget(button)
        buttons_row.addStretch(1)
        buttons_row.addWidget(self.remove_button)
        layout.addLayout(buttons_row)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        for entry in entries:
            self._add(entry)

    # ---------------------------------------------------------------- the list
    def entries(self) -> list[RasterEntry]:
        return list(self._entries)

    def _add(self, entry: RasterEntry) -> bool:
        if any(e.path == entry.path for e in self._entries):
            return False
        self._entries.append(entry)
        kind = {"layer": "layer", "file": "file", "folder": "folder"}[entry.kind]
        bands = f", {entry.bands} band{'s' if entry.bands != 1 else ''}" if entry.bands else ""
        count = entry.rasters
        rasters = f", {count} raster{'s' if count != 1 else ''}" if count is not None else ""
        problems = entry.problems(self.engine)
        item = QListWidgetItem(f"{MARK if problems else ''}{entry.name}  ({kind}{bands}{rasters})")
        item.setToolTip("\n".join([entry.path, *problems]))
        item.setData(Qt.ItemDataRole.UserRole, entry.path)
        if problems:
            item.setForeground(QBrush(QColor("#cf222e")))
        self.list.addItem(item)
        return True

    def _show_problems(self, problems: list[str]) -> None:
        self.problem_label.setText("\n".join(problems))
        self.problem_label.setVisible(bool(problems))

    def _add_all(self, found: list[RasterEntry | str]) -> list[str]:
        """Add the entries; show (and return) what could not be added and what the added ones
        will fail on, so that it is seen before Run."""
        problems = [f for f in found if isinstance(f, str)]
        for entry in found:
            if isinstance(entry, RasterEntry) and self._add(entry):
                shown = entry.problems(self.engine)
                problems += [f"{entry.name}: {p}" for p in shown[:3]]
                if len(shown) > 3:
                    problems.append(f"{entry.name}: … and {len(shown) - 3} more (see its tooltip)")
        self._show_problems(problems)
        return problems

    def add_layers(self, layers: list[QgsRasterLayer]) -> list[str]:
        """Add project raster layers; returns (and shows) the ones that cannot be added."""
        return self._add_all([layer_entry(layer) for layer in layers])

    def add_files(self, paths: list[str]) -> list[str]:
        return self._add_all([file_entry(path) for path in paths])

    def add_folder(self, path: str) -> list[str]:
        return self._add_all([folder_entry(path)])

    def remove_selected(self) -> None:
        gone = {item.data(Qt.ItemDataRole.UserRole) for item in self.list.selectedItems()}
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self._entries = [e for e in self._entries if e.path not in gone]

    # ---------------------------------------------------------------- adding
    def _fill_layers_menu(self) -> None:
        self.layers_menu.clear()
        layers = [
            layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsRasterLayer)
        ]
        layers.sort(key=lambda layer: layer.name().lower())
        if not layers:
            action = self.layers_menu.addAction("(no raster layers in the project)")
            action.setEnabled(False)
            return
        every = self.layers_menu.addAction("All raster layers")
        every.triggered.connect(lambda: self.add_layers(layers))
        self.layers_menu.addSeparator()
        for layer in layers:
            action = self.layers_menu.addAction(layer.name())
            action.triggered.connect(lambda _checked=False, lyr=layer: self.add_layers([lyr]))

    def _browse_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "More rasters", "", FILES_FILTER)
        if paths:
            self.add_files(paths)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A folder of rasters")
        if path:
            self.add_folder(path)


class MoreRastersField(QWidget):
    """The dialog's row: a button that opens the list, what it holds ("+4: 2 layers, 2 files", and
    how many have problems for the chosen engine) and Clear (the next run maps one raster again)."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.button = QToolButton()
        self.button.setText("Add…")
        self.button.setObjectName("paligemmaMoreRasters")
        self.button.setToolTip(
            "Map more rasters in the same run (project layers, files, a folder): one GeoPackage for "
            "the region, with a 'scenes' layer"
        )
        self.button.clicked.connect(self.edit)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.clear_button = QToolButton()
        self.clear_button.setText("Clear")
        self.clear_button.setObjectName("paligemmaMoreRastersClear")
        self.clear_button.setToolTip("Remove every raster of this list: the run maps the raster above only")
        self.clear_button.clicked.connect(lambda: self.set_entries([]))
        layout.addWidget(self.button)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.clear_button)
        self.editor: MoreRastersDialog | None = None
        self._entries: list[RasterEntry] = []
        self.engine = "water-index"
        self._update()

    def entries(self) -> list[RasterEntry]:
        return list(self._entries)

    def set_entries(self, entries: list[RasterEntry]) -> None:
        self._entries = list(entries)
        self._update()
        self.changed.emit()

    def set_engine(self, engine: str) -> None:
        """Problems depend on the engine (one band is fine for PaliGemma, not for the water index)."""
        if engine != self.engine:
            self.engine = engine
            self._update()

    def _update(self) -> None:
        self.label.setText(describe(self._entries, self.engine))
        problems = [f"{e.name}: {p}" for e in self._entries for p in e.problems(self.engine)]
        self.label.setToolTip("\n".join(problems[:20]))
        self.button.setText("Edit…" if self._entries else "Add…")
        self.clear_button.setVisible(bool(self._entries))

    def edit(self) -> MoreRastersDialog:
        """Open the list editor (non-blocking); OK keeps what it holds. Returns the editor."""
        editor = MoreRastersDialog(self._entries, self, self.engine)
        self.editor = editor

        def answered(result: int) -> None:
            self.editor = None
            if result == QDialog.DialogCode.Accepted:
                self.set_entries(editor.entries())
            editor.deleteLater()

        editor.finished.connect(answered)
        editor.open()
        return editor

    def check(self, errors: list[str]) -> None:
        """Append what stops the run: a file or folder gone since it was added, and a raster or layer
        that will fail (no CRS; one band for the water index). A folder's rasters that will fail are
        marked but do not stop it: they are recorded as failed scenes and the run goes on."""
        for entry in self._entries:
            if not entry.path.startswith("/vsi"):
                path = Path(entry.path)
                if entry.kind == "folder" and not path.is_dir():
                    errors.append(f"More rasters: the folder {entry.path} is gone.")
                    continue
                if entry.kind != "folder" and not path.is_file():
                    errors.append(f"More rasters: {entry.path} is gone.")
                    continue
            if entry.kind != "folder":  # one band: the dialog's band check says it, for every raster
                problems = [p for p in entry.problems(self.engine) if p != ISSUES["one_band"]]
                errors += [f"More rasters: {entry.name}: {p}; remove it." for p in problems]

    def to_setting(self) -> str:
        return json.dumps([asdict(e) for e in self._entries])

    def restore(self, text: str) -> None:
        """Entries remembered in QgsSettings, as far as they still exist (their checks as saved)."""
        try:
            items = json.loads(text or "[]")
        except ValueError:
            items = []
        entries = []
        for item in items if isinstance(items, list) else []:
            try:
                issues = tuple((str(n), str(c)) for n, c in item.pop("issues", []) or [])
                entry = RasterEntry(**item, issues=issues)
            except (TypeError, ValueError, AttributeError):
                continue
            path = Path(entry.path)
            if entry.path.startswith("/vsi") or (path.is_dir() if entry.kind == "folder" else path.is_file()):
                entries.append(entry)
        self.set_entries(entries)
