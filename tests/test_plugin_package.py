"""The zip users install: its layout, and that QGIS loads, starts and unloads it cleanly."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "rasterio", "geopandas", "pyogrio")
PACKAGE = "paligemma_qgis"


def test_zip_layout(plugin_zip):
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {n.split("/")[0] for n in names} == {PACKAGE}, "one top folder"
    for required in (
        "__init__.py",
        "metadata.txt",
        "resources/icon.svg",
        "plugin/plugin.py",
        "cli/worker.py",
    ):
        assert f"{PACKAGE}/{required}" in names
    assert f"{PACKAGE}/core/run/driver.py" in names
    assert f"{PACKAGE}/requirements-worker.txt" in names and f"{PACKAGE}/LICENSE" in names
    assert {
        f"{PACKAGE}/locks/{name}" for name in ("worker.txt", "model.txt", "model-torch.txt", "region.txt")
    } <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if "/tests/" in n or n.split("/")[-1].startswith("test_")]
    assert not [n for n in names if any(part.startswith(".") for part in n.split("/"))]
    # Every module git tracks in the source package is shipped (and nothing it does not track).
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", PACKAGE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {p for p in tracked if p.endswith(".py")} <= set(names)


def test_zip_metadata_matches_package(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        meta = configparser.ConfigParser()
        meta.read_string(zf.read(f"{PACKAGE}/metadata.txt").decode("utf-8"))
        init = zf.read(f"{PACKAGE}/__init__.py").decode("utf-8")
        requirements = zf.read(f"{PACKAGE}/requirements-worker.txt").decode("utf-8").split()
        model = zf.read(f"{PACKAGE}/requirements-model.txt").decode("utf-8").split()
        region = zf.read(f"{PACKAGE}/requirements-region.txt").decode("utf-8").split()
    assert f'__version__ = "{meta["general"]["version"]}"' in init
    # QGIS names the plugin after the zip up to its first dot: paligemma_qgis-0.1.0.zip was "paligemma_qgis-0".
    assert plugin_zip.name == f"{PACKAGE}.{meta['general']['version']}.zip"
    # Every engine's packages first and alone (the water index needs no torch); the model's apart.
    assert "rasterio" in requirements and not any(r.startswith("torch") for r in requirements)
    assert any(r.startswith("torch") for r in model) and "transformers" in model
    assert not {"pytest", "peft", "ruff"} & {r.split("<")[0].split("=")[0] for r in requirements + model}
    # Ray apart too (only with a Ray address), with its client for ray:// addresses; no dev tools.
    assert region == ["ray[client]"]


def test_package_refuses_wrong_version_and_leaves_nothing(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "package.sh"), "9.9.9", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "does not match" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_package_is_reproducible_and_atomic(plugin_zip, tmp_path):
    version = plugin_zip.name.removeprefix(f"{PACKAGE}.").removesuffix(".zip")
    subprocess.run(
        ["bash", str(REPO / "scripts" / "package.sh"), version, str(tmp_path)],
        check=True,
        capture_output=True,
    )
    assert [p.name for p in tmp_path.iterdir()] == [plugin_zip.name]  # no temp file left
    assert (tmp_path / plugin_zip.name).read_bytes() == plugin_zip.read_bytes()


@pytest.fixture
def plugin_from_zip(installed_plugins_dir, qgis_iface):
    """Load the unzipped plugin through qgis.utils, as QGIS does, instead of the source checkout."""
    from qgis import utils

    saved_modules = {
        name: mod for name, mod in sys.modules.items() if name == PACKAGE or name.startswith(f"{PACKAGE}.")
    }
    for name in saved_modules:
        del sys.modules[name]
    saved_paths = list(utils.plugin_paths)
    sys.path.insert(0, str(installed_plugins_dir))
    utils.plugin_paths[:] = [str(installed_plugins_dir)]
    utils.updateAvailablePlugins()
    try:
        yield utils
    finally:
        if PACKAGE in utils.active_plugins:
            utils.unloadPlugin(PACKAGE)
        sys.path.remove(str(installed_plugins_dir))
        utils.plugin_paths[:] = saved_paths
        utils.updateAvailablePlugins()
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
        sys.modules.update(saved_modules)


def test_load_start_unload_with_qgis_utils(plugin_from_zip, qgis_iface, installed_plugins_dir):
    utils = plugin_from_zip
    assert PACKAGE in utils.available_plugins
    heavy_before = {m for m in HEAVY if m in sys.modules}
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("paligemma") is None

    assert utils.loadPlugin(PACKAGE)
    assert Path(sys.modules[PACKAGE].__file__).is_relative_to(installed_plugins_dir)
    menu_calls = qgis_iface.addPluginToRasterMenu.call_count
    assert utils.startPlugin(PACKAGE)
    plugin = utils.plugins[PACKAGE]

    # Toolbar button with the plugin's icon, and Raster menu entries.
    toolbar = plugin.toolbar
    assert toolbar is not None and plugin.run_action in toolbar.actions()
    assert not plugin.run_action.icon().isNull()
    assert qgis_iface.mainWindow().findChild(type(toolbar), "PaliGemmaWaterToolbar") is toolbar
    assert qgis_iface.addPluginToRasterMenu.call_count == menu_calls + 3
    menu_actions = [c.args[1] for c in qgis_iface.addPluginToRasterMenu.call_args_list[-3:]]
    assert {plugin.run_action, plugin.export_action, plugin.setup_action} == set(menu_actions)
    provider = registry.providerById("paligemma")
    assert provider is not None
    assert registry.algorithmById("paligemma:segment_water") is not None
    assert {m for m in HEAVY if m in sys.modules} == heavy_before, "loading imported a heavy module"

    removed_before = qgis_iface.removePluginRasterMenu.call_count
    run_action = plugin.run_action
    assert utils.unloadPlugin(PACKAGE)
    assert PACKAGE not in utils.active_plugins
    assert registry.providerById("paligemma") is None
    assert qgis_iface.removePluginRasterMenu.call_count == removed_before + 3
    removed = [c.args[1] for c in qgis_iface.removePluginRasterMenu.call_args_list[-3:]]
    assert run_action in removed
    QgsApplication.processEvents()
    assert qgis_iface.mainWindow().findChild(type(toolbar), "PaliGemmaWaterToolbar") is None
    assert PACKAGE not in sys.modules  # qgis.utils removed the plugin's modules


INNER_TEST = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    HEAVY = {heavy!r}
    PLUGINS = {plugins!r}
    REPORT = {report!r}


    def test_start_plugin_and_open_dialogs(qgis_iface):
        from qgis import utils

        report = {{"before": [m for m in HEAVY if m in sys.modules]}}
        sys.path.insert(0, PLUGINS)
        utils.plugin_paths[:] = [PLUGINS]
        utils.updateAvailablePlugins()
        assert utils.loadPlugin("paligemma_qgis") and utils.startPlugin("paligemma_qgis")
        report["file"] = sys.modules["paligemma_qgis"].__file__
        from paligemma_qgis.plugin.dialog import SegmentDialog
        from paligemma_qgis.plugin.export_dialog import ExportDialog
        from paligemma_qgis.plugin.setup_check import SetupCheckDialog
        from paligemma_qgis.plugin.setup_tasks import venv_steps, weights_steps

        dialog = SegmentDialog(qgis_iface)
        dialog.show()
        dialog.close()
        export = ExportDialog(qgis_iface)
        export.show()
        export.validate()
        export.close()
        setup = SetupCheckDialog()
        setup.show()
        setup.close()
        venv_steps()
        weights_steps()
        report["after_start"] = [m for m in HEAVY if m in sys.modules]
        report["unloaded"] = utils.unloadPlugin("paligemma_qgis")
        Path(REPORT).write_text(json.dumps(report))
    """
)


@pytest.mark.slow
def test_loading_imports_nothing_heavy(installed_plugins_dir, tmp_path):
    """A fresh QGIS (pytest-qgis's iface in its own process): start the plugin and open its
    dialogs; torch, transformers or rasterio must not appear in that process."""
    report_path = tmp_path / "report.json"
    inner = tmp_path / "test_inner_load.py"
    inner.write_text(
        INNER_TEST.format(heavy=HEAVY, plugins=str(installed_plugins_dir), report=str(report_path))
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_LIB", "PROJ_DATA", "PYTEST_ADDOPTS")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "qgis_gui_enabled=false",
            "--rootdir",
            str(tmp_path),
            str(inner),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    report = json.loads(report_path.read_text())
    assert Path(report["file"]).is_relative_to(installed_plugins_dir)
    assert report["before"] == []
    assert report["after_start"] == [], f"heavy modules imported by the plugin: {report['after_start']}"
    assert report["unloaded"] is True
