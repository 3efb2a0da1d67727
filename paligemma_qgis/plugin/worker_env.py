"""Which Python runs the worker, and with what environment.

QGIS's own Python rarely has torch; users point the plugin at a Python that does. In
order of precedence:

1. ``PALIGEMMA_QGIS_PYTHON`` in the environment (scripts, ``qgis_process``, CI);
2. ``paligemma_qgis/worker_python`` in QgsSettings (the setup dialog writes it);
3. the plugin-managed venv ``<QGIS profile>/paligemma_qgis/venv`` when it exists (made from
   QGIS's own Python, with its packages visible);
4. the Python QGIS runs on: the interpreter of this very process, found by its prefix and
   version (inside QGIS ``sys.executable`` is often QGIS itself), never a python3 that merely
   comes first on PATH.

The child gets PYTHONPATH = the folder holding the plugin package (so ``-m
paligemma_qgis`` resolves to this very plugin) and no PROJ_LIB/PROJ_DATA/GDAL_* from
QGIS: rasterio and pyproj wheels bring their own data and break on QGIS's.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from .network import with_qgis_proxy
from .worker_locks import HASHED, Locks

SETTINGS_GROUP = "paligemma_qgis"
PYTHON_SETTING = f"{SETTINGS_GROUP}/worker_python"
RAY_SETTING = f"{SETTINGS_GROUP}/ray_address"
# What Worker setup's "Ray address" may hold: empty (run here), "local" (a Ray started on this
# machine: its GPUs), "auto" (the cluster this machine is part of), "ray://host:port" (Ray Client)
# or "host:port" (a cluster's head).
RAY_ADDRESS_RE = re.compile(r"^(local|auto|ray://[^\s/]+:\d+|[\w.-]+:\d+)$")
ENV_PYTHON = "PALIGEMMA_QGIS_PYTHON"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Environment variables of the QGIS process that must not leak into the worker.
_DROPPED_ENV = ("PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH", "PYTHONHOME", "PYTHONSTARTUP")


def managed_venv_dir() -> Path:
    """Folder of the plugin-managed venv, inside the active QGIS profile."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "paligemma_qgis" / "venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def qgis_python(
    executable: str | None = None,
    prefixes: tuple[str, ...] | None = None,
    version: tuple[int, int] | None = None,
    windows: bool | None = None,
) -> tuple[str, bool]:
    """(the Python QGIS runs on, found): this process's interpreter.

    Inside QGIS ``sys.executable`` is not to be trusted: embedded Python guesses it from PATH
    (in QGIS 3.22 on Linux it was a pyenv shim, another Python altogether) or it is the QGIS
    binary. It counts only when it lies inside this interpreter's prefix; otherwise the
    interpreter is the ``python3.X`` of the same version under ``sys.exec_prefix`` /
    ``sys.base_exec_prefix`` (OSGeo4W: ``apps/Python3X/python.exe``; QGIS.app: its
    framework's ``bin/python3.X``). ``found`` is False when only a python3 on PATH is left,
    a guess the caller says out loud. The arguments are for tests; by default they describe
    this process.
    """
    executable = sys.executable if executable is None else executable
    prefixes = prefixes if prefixes is not None else (sys.exec_prefix, sys.base_exec_prefix)
    major, minor = version or sys.version_info[:2]
    windows = sys.platform == "win32" if windows is None else windows
    exe = Path(executable) if executable else None
    if exe is not None and exe.name.lower().startswith("python") and exe.is_file():
        homes = [Path(p) for p in prefixes if p]
        for candidate in (exe, exe.resolve()):
            if any(home == candidate.parent or home in candidate.parents for home in homes):
                return str(exe), True
    names = (
        ["python.exe", f"python{major}{minor}.exe", "python3.exe"]
        if windows
        else [f"python{major}.{minor}", f"python{major}"]
    )
    for prefix in dict.fromkeys(p for p in prefixes if p):
        for folder in (Path(prefix), Path(prefix) / "bin"):
            for name in names:
                candidate = folder / name
                if candidate.is_file():
                    return str(candidate), True
    guess = shutil.which(f"python{major}.{minor}") or shutil.which("python3") or shutil.which("python")
    return guess or "python3", False


def system_python() -> str:
    """The Python QGIS runs on (see qgis_python); the base of the plugin's worker venv."""
    return qgis_python()[0]


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


def ray_address() -> str:
    """Worker setup's Ray address ('' = segment runs here, in the worker)."""
    return str(QgsSettings().value(RAY_SETTING, "", type=str) or "").strip()


def set_ray_address(address: str) -> None:
    """Remember the Ray address (call ray_address_problem first); empty: runs stay here."""
    settings = QgsSettings()
    if address.strip():
        settings.setValue(RAY_SETTING, address.strip())
    else:
        settings.remove(RAY_SETTING)


def ray_address_problem(address: str) -> str | None:
    """What is wrong with a Ray address as typed in Worker setup, or None when it is fine."""
    address = address.strip()
    if not address or RAY_ADDRESS_RE.match(address):
        return None
    return (
        f"Ray address '{address}': give ray://host:10001 (a cluster's Ray Client port), host:6379 (its "
        "head), auto (the cluster this computer belongs to) or local (a Ray on this computer); empty runs here."
    )


def executor() -> str:
    """ "ray" when segment runs go to Ray (a Ray address is set), else "local"."""
    return "ray" if ray_address() else "local"


def worker_python() -> tuple[str, str]:
    """(python, where the choice came from): 'environment', 'settings', 'managed venv' or 'QGIS python'.

    'QGIS python' falls back to a python3 on PATH only when QGIS's own cannot be found
    (then the source says so: 'python3 on PATH').
    """
    if os.environ.get(ENV_PYTHON, "").strip():
        return os.environ[ENV_PYTHON].strip(), "environment"
    configured = configured_python()
    managed = venv_python(managed_venv_dir())
    if configured and configured != str(managed):
        return configured, "settings"
    if managed.is_file():  # also when the plugin's setup wrote it into the settings
        return str(managed), "managed venv"
    if configured:
        return configured, "settings"
    python, found = qgis_python()
    return python, "QGIS python" if found else "python3 on PATH"


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the worker (and pip): plugin on PYTHONPATH, no QGIS PROJ/GDAL data paths,
    no GDAL side files (.aux.xml) beside the rasters it reads, QGIS's proxy (network.py) for its
    downloads."""
    env = with_qgis_proxy(dict(os.environ if base is None else base))
    for name in _DROPPED_ENV:
        env.pop(name, None)
    # Only the plugin's parent: QGIS's own PYTHONPATH may hold packages built for another Python.
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    env["GDAL_PAM_ENABLED"] = "NO"  # reading a user's raster writes no .aux.xml beside it
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


def worker_flags(model: str | None, vae: str | None, executor: str = "local") -> list[str]:
    """The flags ``worker --check`` and ``worker --probe`` share: what the runs will need."""
    args = [] if executor == "local" else ["--executor", executor]
    if model:
        args += ["--model", model]
    if vae:
        args += ["--vae", vae]
    return args


# What the worker installs, by group: "geo" (every engine), "model" (the PaliGemma engine) and
# "region" (runs sent to Ray). The zip ships them as requirements-worker.txt /
# requirements-model.txt / requirements-region.txt (scripts/package.sh); a source checkout has
# them as sections of requirements.in.
REQUIREMENT_FILES = {
    "geo": "requirements-worker.txt",
    "model": "requirements-model.txt",
    "region": "requirements-region.txt",
}
_SECTIONS = {"geo": "# worker", "model": "# model", "region": "# region"}
FALLBACK_REQUIREMENTS = {
    "geo": [
        "numpy",
        "rasterio",
        "shapely",
        "pyproj",
        "geopandas",
        "pyogrio",
        "pillow",
        "tqdm",
        "platformdirs",
        "pystac",
        "pystac-client",
    ],
    "model": ["torch", "transformers", "tokenizers", "safetensors", "huggingface-hub"],
    "region": ["ray[client]"],
}


def requirements(group: str) -> list[str]:
    """The requirement lines of ``group`` ("geo", "model" or "region"), e.g. ["numpy<2", "rasterio", ...]."""
    shipped = PACKAGE_DIR / REQUIREMENT_FILES[group]
    if shipped.is_file():
        return _requirement_lines(shipped.read_text(encoding="utf-8").splitlines())
    source = PACKAGE_DIR.parent / "requirements.in"
    if source.is_file():
        lines = source.read_text(encoding="utf-8").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith(_SECTIONS[group])), None)
        if start is not None:
            section = []
            for line in lines[start + 1 :]:
                if line.startswith("# ") and ":" in line:  # the next section's header
                    break
                section.append(line)
            return _requirement_lines(section)
    return list(FALLBACK_REQUIREMENTS[group])


def _requirement_lines(lines: list[str]) -> list[str]:
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def requirements_file() -> Path | None:
    """The shipped requirements of every engine (plugin zip), or requirements.in of a checkout."""
    for candidate in (PACKAGE_DIR / REQUIREMENT_FILES["geo"], PACKAGE_DIR.parent / "requirements.in"):
        if candidate.is_file():
            return candidate
    return None


def setup_commands(torch_index: str | None = None) -> list[str]:
    """Shell commands that create the plugin-managed worker venv and install the worker's packages:
    the geospatial ones first (every engine), then torch (from ``torch_index`` when the machine
    needs another build than PyPI's) and the rest of the PaliGemma engine's; each from its hashed
    lock (worker_locks) where the plugin ships one, by name otherwise."""
    venv = managed_venv_dir()
    base = system_python()
    python = venv_python(venv)
    quote = (lambda r: f'"{r}"') if sys.platform == "win32" else (lambda r: f"'{r}'")
    locks = Locks()

    def install(group: str, names: list[str], lock: Path | None, index: str = "") -> str:
        if lock is not None:
            return f'"{python}" -m pip install {" ".join(HASHED)} -r "{lock}"{index}'
        return f'"{python}" -m pip install {" ".join(quote(r) for r in names) or group}{index}'

    model = requirements("model")
    torch = [r for r in model if r.lower().startswith("torch")]
    rest = [r for r in model if r not in torch]
    if torch_index:
        variant = locks.torch_variant(torch_index)
        pins = f' -c "{locks.constraints}"' if locks.constraints is not None and variant is None else ""
        extra = " --extra-index-url https://pypi.org/simple" if variant is not None else ""
        torch_command = install("torch", torch, variant, f" --index-url {torch_index}{extra}{pins}")
    else:
        torch_command = install("torch", torch, locks.path("torch"))
    return [
        f'"{base}" -m venv --system-site-packages "{venv}"',
        install("geo", requirements("geo"), locks.path("geo")),
        torch_command,
        install("model", rest, locks.path("model")),
        module_shell_command(str(python), "weights download"),
    ]


def module_shell_command(python: str, args: str) -> str:
    """A shell command running ``python -m paligemma_qgis ARGS`` with this plugin importable."""
    if sys.platform == "win32":
        return f'set "PYTHONPATH={PACKAGE_DIR.parent}" && "{python}" -m {PACKAGE_DIR.name} {args}'
    return f'PYTHONPATH="{PACKAGE_DIR.parent}" "{python}" -m {PACKAGE_DIR.name} {args}'
