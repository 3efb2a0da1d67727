"""What the desktop walk-throughs share: a throw-away QGIS profile holding the plugin from its zip,
and QGIS itself under Xvfb at 1366x768, run with a ``--code`` file that drives the GUI.

Used by the ``launch()`` of qgis_desktop_first_run.py and qgis_desktop_region_run.py, which run
with the project's Python; inside QGIS those files only drive the GUI and do not import this.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAIP = REPO.parent / "shared" / "data" / "rasters" / "opengeos_naip_m_4709963_se_14_1_20200831.tif"
# What this shell's Python or GDAL set up and QGIS must not inherit (its own proj.db, its own Python).
_NOT_INHERITED = ("PROJ_LIB", "PROJ_DATA", "PYTHONPATH", "QT_QPA_PLATFORM", "PALIGEMMA_QGIS_PYTHON")


def plugin_profile(work: Path, settings: str = "") -> None:
    """Build the plugin zip and unpack it, enabled, into the profile ``default`` under ``work``.

    ``settings``: more QGIS3.ini text (e.g. the plugin's own section).
    """
    version = next(
        line.split("=", 1)[1].strip()
        for line in (REPO / "metadata.txt").read_text().splitlines()
        if line.startswith("version=")
    )
    subprocess.run(["bash", str(REPO / "scripts" / "package.sh"), version, str(work / "dist")], check=True)
    profile = work / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(work / "dist" / f"paligemma_qgis.{version}.zip") as zf:
        zf.extractall(plugins)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\npaligemma_qgis=true\n\n[qgis]\nshowTips=false\n\n" + settings
    )


def run_qgis(work: Path, script: str, raster: Path, env: dict[str, str], out: Path, timeout: int) -> int:
    """QGIS with ``work``'s profile opening ``raster`` and running ``script``; 0 when its log says ``DONE ok``.

    The script writes ``out/drive.log``; QGIS's own output goes to ``out/qgis_output.txt``.
    """
    run_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    run_env.update(HOME=str(work / "home"), **env)
    command = ["xvfb-run", "-a", "-s", "-screen 0 1366x768x24", os.environ.get("QGIS_BIN", "qgis.bin"),
               "--profiles-path", str(work), "--profile", "default", "--nologo", "--noversioncheck",
               "--code", script, str(raster)]  # fmt: skip
    try:
        proc = subprocess.run(command, env=run_env, timeout=timeout, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        output = f"timed out after {timeout} s\n{_text(exc.stdout)}{_text(exc.stderr)}"
    (out / "qgis_output.txt").write_text(output)
    log = (out / "drive.log").read_text() if (out / "drive.log").is_file() else "(no log)"
    print(log)
    return 0 if "DONE ok" in log else 1


def _text(stream: str | bytes | None) -> str:
    """TimeoutExpired keeps what was read as bytes even when text=True was asked for."""
    if isinstance(stream, bytes):
        return stream.decode(errors="replace")
    return stream or ""
