"""Shared fixtures. QGIS runs headless (pytest-qgis, offscreen Qt)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PALIGEMMA_QGIS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real rasters and reference text); tests using it skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set PALIGEMMA_QGIS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def vae_npz(tmp_path_factory) -> Path:
    """A vae-oid.npz-layout file with seeded random weights (load with allow_custom_vae=True)."""
    from synthetic_vae import make_random_vae_npz

    return make_random_vae_npz(tmp_path_factory.mktemp("vae") / "vae-oid.npz", seed=0)


@pytest.fixture(scope="session")
def tiny_paligemma(tmp_path_factory) -> Path:
    """Folder of a tiny random-weight PaliGemma 2 (224 px, real tokenizer layout), built offline."""
    pytest.importorskip("transformers")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_tiny_paligemma", REPO / "scripts" / "make_tiny_paligemma.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_paligemma(tmp_path_factory.mktemp("tiny_paligemma") / "model", seed=0)


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory) -> Path:
    """The installable plugin zip, built by scripts/package.sh (what `make package` runs)."""
    import configparser
    import subprocess

    meta = configparser.ConfigParser()
    meta.read(REPO / "metadata.txt", encoding="utf-8")
    version = meta["general"]["version"]
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["bash", str(REPO / "scripts" / "package.sh"), version, str(dist)], check=True, capture_output=True
    )
    return dist / f"paligemma_qgis.{version}.zip"  # QGIS takes the id up to the first dot


@pytest.fixture(scope="session")
def installed_plugins_dir(plugin_zip, tmp_path_factory) -> Path:
    """A QGIS profile's python/plugins folder holding the unzipped plugin (paligemma_qgis/)."""
    import zipfile

    plugins = tmp_path_factory.mktemp("profile") / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    return plugins


@pytest.fixture
def water_scene(tmp_path):
    """A small synthetic RGBN GeoTIFF (UTM, uint8) with two lakes, a pond and a river."""
    from synthetic_rasters import make_scene

    return make_scene(tmp_path / "lakes.tif")


@pytest.fixture
def clean_project():
    """The QGIS project, emptied after the test (layers left referenced make QGIS crash at exit)."""
    from qgis.core import QgsProject

    project = QgsProject.instance()
    project.clear()
    yield project
    project.clear()


@pytest.fixture
def provider(qgis_processing, monkeypatch):
    """The plugin's Processing provider, registered afresh, its worker this test Python."""
    import sys

    from qgis.core import QgsApplication

    from paligemma_qgis.plugin.provider import PaliGemmaProvider
    from paligemma_qgis.plugin.worker_env import ENV_PYTHON

    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("paligemma")
    if existing is not None:
        registry.removeProvider(existing)
    prov = PaliGemmaProvider()
    assert registry.addProvider(prov)
    yield prov
    registry.removeProvider(prov)


@pytest.fixture
def queued_tasks(monkeypatch):
    """The task manager stubbed: tasks are queued in the list, never run. A task that never runs
    never finishes, so never removes its temporary folders: this does it for them at the end."""
    import shutil

    from qgis.core import QgsApplication

    queued: list = []
    monkeypatch.setattr(QgsApplication.taskManager(), "addTask", queued.append, raising=False)
    yield queued
    for task in queued:
        while task is not None:
            for path in getattr(task, "cleanup", []):
                shutil.rmtree(path, ignore_errors=True)
            task = getattr(task, "followed_by", None)


@pytest.fixture
def dlg(qgis_iface, clean_project):
    """The Segment water dialog, on a clean project and an empty message bar."""
    from paligemma_qgis.plugin.dialog import SegmentDialog

    qgis_iface.messageBar().clearWidgets()
    d = SegmentDialog(qgis_iface)
    yield d
    d.close()
    d.deleteLater()


def _qgis_process_exe() -> str | None:
    """qgis_process, or its .bin when Debian's wrapper breaks (it passes --noversioncheck from
    /etc/default/qgis, which qgis_process 3.22 refuses)."""
    import shutil
    import subprocess

    exe = shutil.which("qgis_process")
    if exe is None:
        return None
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    probe = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=60)
    if probe.returncode == 0 and "not known" not in probe.stdout + probe.stderr:
        return exe
    binary = Path(exe).with_name("qgis_process.bin")
    return str(binary) if binary.is_file() else None


@pytest.fixture
def qgis_process(installed_plugins_dir, tmp_path) -> tuple[str, dict[str, str]]:
    """(qgis_process, its environment): the plugin installed from its zip in an extra plugins
    folder, a throw-away profile in ``tmp_path/qgis_config``, this Python as the worker."""
    import sys

    from paligemma_qgis.plugin.worker_env import ENV_PYTHON

    exe = _qgis_process_exe()
    if exe is None:
        pytest.skip("qgis_process not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_LIB", "PROJ_DATA", "PYTHONPATH")}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(installed_plugins_dir),
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "qgis_config"),
        **{ENV_PYTHON: sys.executable},
    )
    return exe, env
