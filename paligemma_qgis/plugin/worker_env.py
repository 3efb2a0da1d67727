"""Which Python runs the worker, and with what environment.

QGIS's own Python rarely has torch; users point the plugin at a Python that does. In
order of precedence:

1. ``PALIGEMMA_QGIS_PYTHON`` in the environment (scripts, ``qgis_process``, CI);
2. ``paligemma_qgis/worker_python`` in QgsSettings (the setup dialog writes it);
3. the plugin-managed venv ``<QGIS profile>/paligemma_qgis/venv`` when it exists;
4. a python3 next to QGIS's own interpreter (``sys.executable`` when it is a Python).

The child gets PYTHONPATH = the folder holding the plugin package (so ``-m
paligemma_qgis`` resolves to this very plugin) and no PROJ_LIB/PROJ_DATA/GDAL_* from
QGIS: rasterio and pyproj wheels bring their own data and break on QGIS's.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

SETTINGS_GROUP = "paligemma_qgis"
PYTHON_SETTING = f"{SETTINGS_GROUP}/worker_python"
ENV_PYTHON = "PALIGEMMA_QGIS_PYTHON"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Environment variables of the QGIS process that must not leak into the worker.
_DROPPED_ENV = ("PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH", "PYTHONHOME", "PYTHONSTARTUP")


def managed_venv_dir() -> Path:
    """Folder of the plugin-managed venv, inside the active QGIS profile."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "paligemma_qgis" / "venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def system_python() -> str:
    """A python3 that belongs to QGIS's interpreter (inside QGIS, sys.executable is often QGIS itself)."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python") and exe.is_file():
        return str(exe)
    candidates = [
        Path(sys.exec_prefix) / "bin" / "python3",
        Path(sys.exec_prefix) / "python.exe",
        Path(sys.exec_prefix) / "python3.exe",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which("python3") or shutil.which("python") or "python3"


def configured_python() -> str:
    """The Python the user chose (environment or settings), or '' when none."""
    value = os.environ.get(ENV_PYTHON, "").strip()
    if value:
        return value
    return str(QgsSettings().value(PYTHON_SETTING, "", type=str) or "").strip()


def set_configured_python(path: str) -> None:
    """Remember the worker Python; an empty value goes back to the automatic choice."""
    settings = QgsSettings()
    if path.strip():
        settings.setValue(PYTHON_SETTING, path.strip())
    else:
        settings.remove(PYTHON_SETTING)


def worker_python() -> tuple[str, str]:
    """(python, where the choice came from): 'environment', 'settings', 'managed venv' or 'QGIS python'."""
    if os.environ.get(ENV_PYTHON, "").strip():
        return os.environ[ENV_PYTHON].strip(), "environment"
    configured = configured_python()
    if configured:
        return configured, "settings"
    managed = venv_python(managed_venv_dir())
    if managed.is_file():
        return str(managed), "managed venv"
    return system_python(), "QGIS python"


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the worker: plugin on PYTHONPATH, no QGIS PROJ/GDAL data paths."""
    env = dict(os.environ if base is None else base)
    for name in _DROPPED_ENV:
        env.pop(name, None)
    # Only the plugin's parent: QGIS's own PYTHONPATH may hold packages built for another Python.
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("TQDM_DISABLE", "1")
    return env


def worker_command(*args: str, python: str | None = None) -> list[str]:
    """``<python> -m paligemma_qgis.cli.worker ARGS`` (the CLI's ``worker`` command).

    The worker module alone, not ``-m paligemma_qgis worker``: the full CLI imports every
    command (rasterio, platformdirs...), so a bare Python would crash before it could say
    what it lacks.
    """
    return [python or worker_python()[0], "-m", f"{PACKAGE_DIR.name}.cli.worker", *args]


def requirements_file() -> Path | None:
    """Worker requirements shipped in the plugin zip, or requirements.in of a source checkout."""
    for candidate in (PACKAGE_DIR / "requirements-worker.txt", PACKAGE_DIR.parent / "requirements.in"):
        if candidate.is_file():
            return candidate
    return None


def setup_commands() -> list[str]:
    """Shell commands that create the plugin-managed worker venv and install the worker's packages."""
    venv = managed_venv_dir()
    base = system_python()
    python = venv_python(venv)
    req = requirements_file()
    install = f'-r "{req}"' if req else "torch transformers rasterio geopandas pyogrio shapely pyproj tqdm"
    return [
        f'"{base}" -m venv --system-site-packages "{venv}"',
        f'"{python}" -m pip install --upgrade pip',
        f'"{python}" -m pip install {install}',
        module_shell_command(str(python), "weights download"),
    ]


def module_shell_command(python: str, args: str) -> str:
    """A shell command running ``python -m paligemma_qgis ARGS`` with this plugin importable."""
    if sys.platform == "win32":
        return f'set "PYTHONPATH={PACKAGE_DIR.parent}" && "{python}" -m {PACKAGE_DIR.name} {args}'
    return f'PYTHONPATH="{PACKAGE_DIR.parent}" "{python}" -m {PACKAGE_DIR.name} {args}'
