"""A new user's first water map, in the real QGIS desktop under Xvfb, with screenshots.

    .venv/bin/python scripts/qgis_desktop_first_run.py [--raster FILE] [--out DIR]

Builds the plugin zip, unpacks it into a throw-away QGIS profile, starts QGIS (xvfb-run,
1366x768) with the raster, and, from inside QGIS (this same file, run by ``--code``): opens
the plugin's dialog from its toolbar action, presses Run, answers the band question
(green 2, NIR 4: the NAIP tile), answers "Set up and run" (a real venv and pip install from
the Python QGIS runs on), waits for the map, then runs again with Overwrite. Screenshots
and a log go to --out. Needs the Debian packages qgis, xvfb (xvfb-run) and network or a
local index for pip.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

# QGIS runs this file with exec() (no __file__): only launch() needs where it lies.


def launch(argv: list[str] | None = None) -> int:
    import argparse
    import shutil
    import tempfile

    from qgis_desktop import NAIP, plugin_profile, run_qgis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", default=str(NAIP))
    parser.add_argument("--out", default="desktop_first_run")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds QGIS may take in all")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qgis_desktop_") as tmp:
        work = Path(tmp)
        plugin_profile(work)
        raster = work / Path(args.raster).name
        shutil.copy(args.raster, raster)
        env = {"DESKTOP_FIRST_RUN_OUT": str(out), "DESKTOP_FIRST_RUN_WORK": str(work)}
        return run_qgis(work, str(Path(__file__).resolve()), raster, env, out, args.timeout)


def drive() -> None:
    """Inside QGIS: a timer walks through the first run as a user would."""
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import QObject, QTimer
    from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox, QMessageBox
    from qgis.utils import iface, plugins

    from paligemma_qgis.plugin.setup_tasks import SetupTask  # the zip's copy, from the profile

    out = Path(os.environ["DESKTOP_FIRST_RUN_OUT"])
    log_file = open(out / "drive.log", "w", buffering=1)  # noqa: SIM115 - open for QGIS's whole life
    state: dict = {"step": "wait_plugin", "t": time.monotonic(), "n": 0, "results": []}

    def log(*parts) -> None:
        print(time.strftime("%H:%M:%S"), *parts, file=log_file)

    def shot(name: str) -> None:
        QApplication.primaryScreen().grabWindow(0).save(str(out / f"{name}.png"))
        log("screenshot", name)

    def open_dialog(next_step: str) -> None:
        action = iface.mainWindow().findChild(QObject, "paligemmaMapWater")  # the toolbar button's action
        state["step"] = next_step
        QTimer.singleShot(0, action.trigger)  # the dialog's exec() blocks: the timer ticks inside it

    def tick() -> None:
        state["n"] += 1
        step = state["step"]
        try:
            if time.monotonic() - state["t"] > 900:
                raise TimeoutError(f"stuck at {step}")
            if step == "wait_plugin" and "paligemma_qgis" in plugins:
                log("plugin loaded")
                shot("01_qgis_with_raster")
                open_dialog("dialog")
            elif step in ("dialog", "dialog2"):
                dialog = QApplication.activeModalWidget()
                if dialog is None or not hasattr(dialog, "output_widget"):
                    return
                state["dialog"] = dialog
                if step == "dialog":
                    dialog.output_widget.setFilePath(str(out / "water.gpkg"))
                    QTimer.singleShot(300, lambda: shot("02_dialog"))
                    state["step"] = "run"
                else:
                    dialog.overwrite_check.setChecked(True)
                    dialog.run_button.click()
                    state["step"] = "wait_run"
            elif step == "run":
                state["dialog"].run_button.click()
                state["step"] = "answer"
            elif step == "answer":
                dialog = state["dialog"]
                if dialog.band_dialog is not None:
                    question = dialog.band_dialog
                    shot("03_band_question")
                    question.combos["green"].setCurrentIndex(question.combos["green"].findData(2))
                    question.combos["nir"].setCurrentIndex(question.combos["nir"].findData(4))
                    question.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
                elif getattr(dialog, "setup_box", None) is not None:
                    shot("04_setup_question")
                    log("setup question:", dialog.setup_box.informativeText().replace("\n", " | "))
                    dialog.setup_box.button(QMessageBox.StandardButton.Yes).click()
                    state["step"] = "wait_run"
                elif dialog.task is not None:
                    state["step"] = "wait_run"
            elif step == "wait_run":
                task = state["dialog"].task
                if task is None:
                    return
                run = task
                if isinstance(task, SetupTask):  # the setup, then the run it starts
                    if task.finished_called and not task.succeeded:
                        raise RuntimeError(f"setup failed: {task.error}")
                    run = task.followed_by
                if run is None or not run.finished_called:
                    return
                groups = [c.name() for c in QgsProject.instance().layerTreeRoot().children()]
                log("run finished", run.succeeded, run.error, "tree:", groups)
                log("message bar:", [item.text() for item in iface.messageBar().items()])
                state["results"].append((run.succeeded, groups))
                iface.mapCanvas().zoomToFullExtent()
                state["step"] = "settle"
                state["shot_at"] = time.monotonic() + 4
            elif step == "settle" and time.monotonic() > state["shot_at"]:
                if len(state["results"]) == 1:
                    shot("05_first_map")
                    open_dialog("dialog2")
                else:
                    shot("06_after_overwrite")
                    ok = (
                        all(r[0] for r in state["results"])
                        and state["results"][0][1] == state["results"][1][1]
                    )
                    log("DONE", "ok" if ok else "failed")
                    state["step"] = "quit"
            elif step == "quit":
                QTimer.singleShot(200, QApplication.instance().quit)
                state["step"] = "gone"
        except Exception:
            log(traceback.format_exc())
            log("DONE failed")
            state["step"] = "quit"

    timer = QTimer(iface.mainWindow())  # parented: lives as long as QGIS
    timer.timeout.connect(tick)
    timer.start(500)
    log("driving")


def _inside_qgis() -> bool:
    """True when QGIS runs this file (--code): its iface exists."""
    if not os.environ.get("DESKTOP_FIRST_RUN_OUT"):
        return False
    try:
        from qgis.utils import iface
    except ImportError:
        return False
    return iface is not None


if _inside_qgis():
    drive()
elif __name__ == "__main__":
    raise SystemExit(launch())
