"""End to end in a real QGIS: QgsTask + worker process, cancel, Processing, and qgis_process.

The worker Python is this test's own interpreter (the project's venv): QGIS's process never
imports rasterio or torch, the worker does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsVectorLayer
from qgis.PyQt.QtCore import QCoreApplication
from slow_worker import slow_worker_python
from waiting import wait_for_task, wait_until

from paligemma_qgis.cli.worker import EXIT_CANCELLED
from paligemma_qgis.plugin.messages import item_text, plugin_messages
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.task import WorkerTask
from paligemma_qgis.plugin.worker_env import ENV_PYTHON

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


def _leftovers(folder: Path, output: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((output.name, f".{output.name}")))


def test_task_adds_styled_layers_in_a_group(water_scene, clean_project, qgis_iface, tmp_path):
    output = tmp_path / "water.gpkg"
    job = segment_job(str(water_scene.path), str(output), engine="water-index", preset="naip", overlap=16)
    task = WorkerTask("Water in lakes", job, python=sys.executable, group_name="lakes", iface=qgis_iface)
    progress = []
    task.progressChanged.connect(progress.append)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)

    assert task.succeeded, (task.error, task.outcome)
    assert task.outcome.result["polygons"] >= 4  # two lakes, a pond and a river
    assert progress and max(progress) == pytest.approx(100)
    group = clean_project.layerTreeRoot().findGroup("lakes")
    assert group is not None
    nodes = {node.layer().name(): node for node in group.findLayers()}
    assert set(nodes) == {"water", "chips"}
    assert nodes["water"].isVisible() and not nodes["chips"].isVisible()
    water = nodes["water"].layer()
    assert water.featureCount() == task.outcome.result["polygons"]
    assert water.crs().authid() == "EPSG:32633"
    assert "area_m2" in water.fields().names()
    symbol = water.renderer().symbol()
    fill = symbol.color()
    assert fill.blue() > fill.red() and 0 < fill.alpha() < 255  # blue, semi-transparent
    assert symbol.symbolLayer(0).strokeColor().alpha() == 255  # with an outline
    assert nodes["chips"].layer().featureCount() == task.outcome.result["chips"]
    assert any("water polygons" in m for m in plugin_messages(qgis_iface))


def test_worker_error_reaches_message_bar_and_log(water_scene, clean_project, qgis_iface, tmp_path):
    from qgis.PyQt.QtWidgets import QApplication, QMessageBox, QPushButton

    logged = []

    def on_message(msg, tag, level):
        logged.append((tag, msg))

    QgsApplication.messageLog().messageReceived.connect(on_message)
    output = tmp_path / "water.gpkg"
    # RGB shown, but no NIR/SWIR named: the water index cannot run on bands 1-3 alone.
    job = segment_job(str(water_scene.path), str(output), engine="water-index", bands="1,2,3")
    job["options"]["nir"] = 99
    task = WorkerTask("Water in lakes", job, python=sys.executable, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded is False
    # In the dialog's words: its field, no command-line flag.
    assert (
        task.error.endswith("in 'Green / NIR / SWIR band'") and "99" in task.error and "--" not in task.error
    )
    (shown,) = [m for m in plugin_messages(qgis_iface) if "99" in m]
    assert shown.startswith("Water in lakes failed.")
    # Details… shows the worker's own words and its error class.
    (item,) = [i for i in qgis_iface.messageBar().items() if item_text(i) == shown]
    item.findChild(QPushButton, "paligemmaDetails").click()
    QCoreApplication.processEvents()
    (box,) = [
        w for w in QApplication.topLevelWidgets() if w.objectName() == "paligemmaDetailsBox" and w.isVisible()
    ]
    assert isinstance(box, QMessageBox)
    assert "nir band 99 does not exist" in box.detailedText() and "InputError" in box.detailedText()
    box.close()
    assert any(tag == "PaliGemma Water" and "failed" in msg for tag, msg in logged)
    assert not output.exists()
    assert clean_project.layerTreeRoot().findGroup("lakes") is None
    QgsApplication.messageLog().messageReceived.disconnect(on_message)


def test_cancel_stops_worker_and_leaves_no_output(water_scene, clean_project, qgis_iface, tmp_path):
    """Cancel mid-run: the worker stops at its next batch (SIGTERM, clean exit) and no file stays."""
    wrapper = slow_worker_python(tmp_path, 0.4)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "water.gpkg"
    job = segment_job(str(water_scene.path), str(output), engine="water-index", preset="naip", batch_size=1)
    task = WorkerTask("Water in lakes", job, python=wrapper, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 60
    while task.message != "segmenting chips":
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() < deadline and not task.finished_called, "worker never started segmenting"
    started = time.monotonic()
    task.cancel()
    wait_for_task(task, timeout=30)
    assert time.monotonic() - started < 10  # within about one batch, not at the end of the run
    assert task.outcome.status == "cancelled"
    assert task.outcome.returncode == EXIT_CANCELLED  # the worker stopped itself cleanly
    assert not output.exists()
    assert _leftovers(out_dir, output) == []
    assert clean_project.layerTreeRoot().findGroup("lakes") is None


def test_processing_run_produces_water_layer(provider, water_scene, clean_project, tmp_path):
    import processing

    output = tmp_path / "water.gpkg"
    result = processing.run(
        "paligemma:segment_water",
        {
            "INPUT": str(water_scene.path),
            "ENGINE": 1,
            "BANDS": "naip",
            "MIN_AREA": 100,
            "OUTPUT": str(output),
        },
    )
    assert result["OUTPUT"] == str(output)
    layer = QgsVectorLayer(result["WATER_LAYER"], "water", "ogr")
    assert layer.isValid() and layer.featureCount() >= 4
    assert min(f["area_m2"] for f in layer.getFeatures()) >= 100
    summary = json.loads(result["SUMMARY"])
    assert summary["polygons"] == layer.featureCount()
    assert result["WATER_AREA_KM2"] == pytest.approx(summary["water_area_km2"])
    del layer


def test_processing_reports_worker_errors(provider, water_scene, clean_project, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="NIR"):
        processing.run(
            "paligemma:segment_water",
            {
                "INPUT": str(water_scene.path),
                "ENGINE": 1,
                "BANDS": "1,2,3",
                "OUTPUT": str(tmp_path / "w.gpkg"),
            },
        )
    assert not (tmp_path / "w.gpkg").exists()


def test_qgis_process_runs_the_installed_plugin(qgis_process, installed_plugins_dir, water_scene, tmp_path):
    exe, env = qgis_process
    enable = subprocess.run(
        [exe, "plugins", "enable", "paligemma_qgis"], capture_output=True, text=True, env=env
    )
    assert enable.returncode == 0, enable.stdout + enable.stderr
    ini = (tmp_path / "qgis_config" / "profiles" / "default" / "QGIS" / "QGIS3.ini").read_text()
    assert "paligemma_qgis=true" in ini

    # A raster that does not name its bands, no BANDS: one clear error line, in Processing's words.
    output = tmp_path / "water.gpkg"
    failed = subprocess.run(
        [exe, "run", "paligemma:segment_water", "--", f"INPUT={water_scene.path}", "ENGINE=1", f"OUTPUT={output}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )  # fmt: skip
    assert failed.returncode == 1
    said = [line for line in (failed.stdout + failed.stderr).splitlines() if "NIR" in line]
    assert len(said) == 1, failed.stdout + failed.stderr
    assert (
        said[0].startswith("ERROR:")
        and "or NIR (or SWIR) to its band number (Advanced parameters)" in said[0]
    )
    assert "--" not in said[0] and not output.exists()

    run = subprocess.run(
        [exe, "--json", "run", "paligemma:segment_water", "--",
         f"INPUT={water_scene.path}", "ENGINE=1", "BANDS=naip", f"OUTPUT={output}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    reply = json.loads(run.stdout[run.stdout.index("{") :])
    assert reply["results"]["OUTPUT"] == str(output)
    layer = QgsVectorLayer(f"{output}|layername=water", "water", "ogr")
    assert layer.isValid() and layer.featureCount() >= 4
    # The worker ran the plugin's own copy (from the zip), not the source checkout.
    assert str(installed_plugins_dir) in run.stdout + run.stderr
    del layer


def _known_water(water_scene) -> QgsVectorLayer:
    """The scene's true lakes as a memory layer (a project layer the worker cannot read in place)."""
    from qgis.core import QgsFeature, QgsGeometry

    lakes = QgsVectorLayer("Polygon?crs=EPSG:32633", "known water", "memory")
    features = []
    for geom in water_scene.water:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(geom.wkt))
        features.append(feature)
    lakes.dataProvider().addFeatures(features)
    return lakes


def test_processing_export_training_data(provider, water_scene, vae_npz, clean_project, tmp_path):
    """Known water as a polygon layer -> chips + JSONL through the worker (random-weight VAE)."""
    import processing

    lakes = _known_water(water_scene)
    out_dir = tmp_path / "training"
    result = processing.run(
        "paligemma:export_training_data",
        {
            "INPUT": str(water_scene.path),
            "LABELS_VECTOR": lakes,
            "BANDS": "naip",
            "VAE": str(vae_npz),
            "ALLOW_CUSTOM_VAE": True,
            "VALID_FRACTION": 0.3,
            "BLOCK_SIZE": 1,
            "EMPTY_POLICY": 1,
            "OUTPUT": str(out_dir),
        },
    )
    summary = json.loads(result["SUMMARY"])
    assert result["N_TRAIN"] + result["N_VALID"] == summary["n_train"] + summary["n_valid"] > 0
    records = [
        json.loads(line)
        for name in ("train.jsonl", "valid.jsonl")
        for line in (out_dir / name).read_text().splitlines()
        if line.strip()
    ]
    assert len(records) == summary["n_train"] + summary["n_valid"]
    assert all(set(r) >= {"image", "prefix", "suffix"} for r in records)
    assert all(
        (out_dir / r["image"]).is_file() or (out_dir / "images" / r["image"]).is_file() for r in records
    )
    assert any("<seg" in r["suffix"] and "water" in r["suffix"] for r in records)
    chips = QgsVectorLayer(result["CHIPS_LAYER"], "chips", "ogr")
    assert chips.isValid() and chips.featureCount() >= len(records)
    del chips, lakes


STUBBORN_WORKER = """
import json, signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker stuck in a long batch
job = json.loads(sys.stdin.readline())  # the job line; stdin stays open for a cancel line
out = Path(job["options"]["output"])
out.write_text("partial")
(out.parent / f".{out.name}.x1y2.tmp.gpkg").write_text("temp")
print("workdir=" + job["options"]["workdir"], file=sys.stderr, flush=True)
print(json.dumps({"event": "progress", "done": 1, "total": 10, "message": "segmenting chips"}), flush=True)
time.sleep(60)
"""


def test_runner_kills_a_worker_that_ignores_cancel_and_cleans_up(tmp_path):
    from paligemma_qgis.plugin.runner import run_worker

    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN_WORKER)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "w.gpkg"
    go = []
    started = time.monotonic()
    outcome = run_worker(
        {"task": "segment", "options": {"raster": "x.tif", "output": str(output)}},
        [sys.executable, str(script)],
        on_progress=lambda done, total, message: go.append(done),
        is_cancelled=lambda: bool(go),
        grace_s=1.0,
    )
    assert time.monotonic() - started < 20
    assert outcome.status == "cancelled"
    assert outcome.returncode == -9  # killed after the grace period
    assert _leftovers(out_dir, output) == []
    workdir = Path(outcome.stderr.split("workdir=")[1].split()[0])
    assert not workdir.exists()


def test_runner_reports_a_worker_that_dies_without_a_result(tmp_path):
    from paligemma_qgis.plugin.runner import run_worker

    code = "import sys; sys.stdin.readline(); print('not json'); print('boom', file=sys.stderr); sys.exit(3)"
    outcome = run_worker(
        {"task": "segment", "options": {"output": str(tmp_path / "w.gpkg")}}, [sys.executable, "-c", code]
    )
    assert outcome.status == "error"
    assert "exit code 3" in outcome.message
    assert "boom" in outcome.details
    assert outcome.log == ["not json"]
    missing = run_worker({"task": "segment", "options": {}}, [str(tmp_path / "no_python")])
    assert missing.status == "error" and "cannot start the worker Python" in missing.message


def test_task_with_paligemma_engine_tiny_model(
    water_scene, tiny_paligemma, vae_npz, clean_project, qgis_iface, tmp_path
):
    """The PaliGemma options the dialog sends (model folder, VAE, device, batch) run in the worker."""
    output = tmp_path / "water.gpkg"
    job = segment_job(
        str(water_scene.path),
        str(output),
        engine="paligemma",
        model=str(tiny_paligemma),
        vae=str(vae_npz),
        device="cpu",
        batch_size=4,
    )
    job["options"]["allow_custom_vae"] = True  # random-weight test VAE
    logged = []

    def on_message(msg, tag, level):
        logged.append(msg)

    QgsApplication.messageLog().messageReceived.connect(on_message)
    task = WorkerTask("Water in lakes", job, python=sys.executable, group_name="lakes", iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    try:
        wait_for_task(task, timeout=300)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(on_message)
    assert task.succeeded, (task.error, task.outcome)
    assert task.outcome.result["engine"] == "paligemma"
    assert task.outcome.result["chips"] == 9
    group = clean_project.layerTreeRoot().findGroup("lakes")
    assert group is not None and {n.layer().name() for n in group.findLayers()} == {"water", "chips"}
    # Where it ran reaches the message bar ("... on cpu (N threads), float32") and the log
    # has the summary's details (model, decoding, batch).
    device = task.outcome.result["device"]
    assert device.startswith("cpu (") and "float32" in device
    success = plugin_messages(qgis_iface)
    assert any(m.endswith(f" on {device}.") and "water polygons" in m for m in success), success
    details = next(m for m in logged if "finished:" in m)
    assert f"device: {device}" in details
    assert f"model: {tiny_paligemma}" in details and "decoding: constrained" in details


# --------------------------------------------------------------------------- training-data export


def test_export_dialog_run_adds_chips_and_review(
    water_scene, vae_npz, clean_project, qgis_iface, tmp_path, monkeypatch
):
    """The Export dialog's job runs in the worker (QgsTask) and adds chips + review in a group."""
    from qgis.core import QgsRasterLayer, QgsSettings

    from paligemma_qgis.plugin.export_dialog import ExportDialog
    from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP

    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    QgsSettings().remove(SETTINGS_GROUP)
    raster = QgsRasterLayer(str(water_scene.path), "lakes", "gdal")
    lakes = _known_water(water_scene)
    clean_project.addMapLayers([raster, lakes])
    dialog = ExportDialog(qgis_iface)
    dialog.set_raster_layer(raster)
    dialog.polygon_combo.setLayer(lakes)
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
    dialog.vae_widget.setFilePath(str(vae_npz))
    dialog.allow_custom_check.setChecked(True)
    dialog.valid_spin.setValue(0.3)
    dialog.block_spin.setValue(1)
    dialog.empty_combo.setCurrentIndex(dialog.empty_combo.findData("keep"))
    out_dir = tmp_path / "training"
    dialog.output_widget.setFilePath(str(out_dir))
    progress = []
    dialog.run()  # the worker Python is checked first (background), then the export starts
    wait_until(lambda: dialog.task is not None, what=" | ".join(i.text() for i in dialog.message_bar.items()))
    task = dialog.task
    task.progressChanged.connect(progress.append)
    try:
        wait_for_task(task, timeout=180)
    finally:
        dialog.deleteLater()
        QgsSettings().remove(SETTINGS_GROUP)
    assert task.succeeded, (task.error, task.outcome)
    summary = task.outcome.result
    # 9 candidate chips; the snapped edge chips overlap, so some are held out of the split
    written = summary["n_train"] + summary["n_valid"]
    assert summary["n_candidates"] == 9 and written + sum(summary["not_written"].values()) == 9
    assert written >= 6 and summary["n_objects"] >= 4
    assert progress and max(progress) == pytest.approx(100)
    group = clean_project.layerTreeRoot().findGroup("Training data from lakes")
    assert group is not None
    layers = {node.layer().name(): node.layer() for node in group.findLayers()}
    assert set(layers) == {"chips", "review"}
    assert layers["chips"].featureCount() == 9
    assert layers["review"].featureCount() >= summary["n_objects"]
    assert layers["chips"].renderer().type() == "categorizedSymbol"  # by split
    success = plugin_messages(qgis_iface)
    expected = f"mean decode-back IoU {summary['mean_codec_iou']:.3f}"
    assert any(expected in m and "train +" in m for m in success), success
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp folder left
    del lakes, raster


# --------------------------------------------------------------------------- worker setup tasks


@pytest.fixture
def fresh_settings():
    from qgis.core import QgsSettings

    from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP

    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


def test_setup_commands_are_the_documented_ones(tmp_path):
    from paligemma_qgis.plugin.setup_tasks import venv_steps, weights_steps
    from paligemma_qgis.plugin.worker_env import PACKAGE_DIR, venv_python

    req = tmp_path / "requirements-worker.txt"
    req.write_text("")
    venv = tmp_path / "profile" / "paligemma_qgis" / "venv"
    create, install = venv_steps(venv, "/usr/bin/python3", req)
    assert create.command == ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)]
    assert install.command == [str(venv_python(venv)), "-m", "pip", "install", "-r", str(req)]
    assert "PYTHONPATH" not in create.env and "PROJ_LIB" not in create.env
    (download,) = weights_steps("/opt/worker/bin/python")
    assert download.command[:5] == ["/opt/worker/bin/python", "-m", "paligemma_qgis", "weights", "download"]
    assert download.env["PYTHONPATH"] == str(PACKAGE_DIR.parent)  # this very plugin
    default = venv_steps()  # the profile's venv and the plugin's requirements
    assert default[0].command[-1].endswith(str(Path("paligemma_qgis") / "venv"))
    # By default the geospatial packages' hashed lock, installed as it is.
    assert default[1].command[-4:] == [
        "--require-hashes",
        "--no-deps",
        "-r",
        str(PACKAGE_DIR / "locks" / "worker.txt"),
    ]


def test_create_worker_environment_task(qgis_iface, fresh_settings, tmp_path):
    """The real venv step into tmp, pip with an empty requirements file and --no-index (no network)."""
    from paligemma_qgis.plugin.setup_tasks import create_venv_task
    from paligemma_qgis.plugin.worker_env import configured_python, venv_python, worker_python

    req = tmp_path / "requirements-worker.txt"
    req.write_text("# nothing to install\n")
    venv = tmp_path / "venv"
    task = create_venv_task(venv, sys.executable, req, pip_args=["--no-index"], iface=qgis_iface)
    progress = []
    task.progressChanged.connect(progress.append)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task, 180.0)
    assert task.succeeded, (task.error, task.outcome)
    python = venv_python(venv)
    assert python.is_file()
    assert configured_python() == str(python) == worker_python()[0]
    assert max(progress) == pytest.approx(100)
    # --system-site-packages: QGIS's own packages stay visible to the worker.
    probe = subprocess.run(
        [str(python), "-c", "import qgis, sys; print(sys.prefix)"], capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == venv
    assert any("worker environment: done" in m for m in plugin_messages(qgis_iface))


def test_setup_task_reports_a_failing_step(qgis_iface, fresh_settings, tmp_path):
    from paligemma_qgis.plugin.setup_tasks import create_venv_task, download_weights_task
    from paligemma_qgis.plugin.worker_env import configured_python

    req = tmp_path / "requirements-worker.txt"
    req.write_text("")
    venv = tmp_path / "venv"
    missing = tmp_path / "no" / "python3"
    task = create_venv_task(venv, str(missing), req, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task, 180.0)
    assert task.succeeded is False
    assert "Create the worker environment: cannot start" in task.error and str(missing) in task.error
    assert any(str(missing) in m and "failed" in m for m in plugin_messages(qgis_iface))
    assert configured_python() == "" and not venv.exists()

    # pip fails (a package that no index has): exit code and pip's own words; no half-made venv.
    req.write_text("no-such-package-paligemma-qgis==1.0\n")
    task = create_venv_task(venv, sys.executable, req, pip_args=["--no-index"], iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task, 180.0)
    assert task.succeeded is False
    assert task.error.startswith("Install the worker packages failed (exit code 1)")
    assert "no-such-package-paligemma-qgis" in "\n".join(task.outcome.output)
    assert configured_python() == "" and not venv.exists()

    task = download_weights_task(str(missing), iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task, 180.0)
    assert task.succeeded is False and "cannot start" in task.error


def test_run_steps_cancel_stops_the_running_command():
    from paligemma_qgis.plugin.setup_tasks import Step, run_steps

    seen = []
    steps = [
        Step("slow", [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]),
        Step("never", [sys.executable, "-c", "print('should not run')"]),
    ]
    started = time.monotonic()
    outcome = run_steps(steps, is_cancelled=lambda: "started" in seen, on_line=seen.append, grace_s=2)
    assert time.monotonic() - started < 20
    assert outcome.status == "cancelled" and outcome.failed is steps[0]
    assert "should not run" not in seen


def test_setup_dialog_download_button_reports_failure(qgis_iface, fresh_settings, tmp_path):
    """The dialog's button runs the task in the background and shows why it failed."""
    from paligemma_qgis.plugin.setup_check import RUNNING, SetupCheckDialog

    dialog = SetupCheckDialog()
    missing = tmp_path / "no" / "python3"
    dialog.python_widget.setFilePath(str(missing))
    task = dialog.download_weights()
    assert task in RUNNING and not dialog.weights_button.isEnabled()
    assert task.steps[0].command[0] == str(missing)
    wait_for_task(task, 180.0)
    QCoreApplication.processEvents()
    assert task not in RUNNING
    assert dialog.weights_button.isEnabled() and dialog.venv_button.isEnabled()
    report = dialog.report.toPlainText()
    assert "Download the VAE weights failed" in report and str(missing) in report
    dialog.deleteLater()


def test_runner_removes_the_temp_folder_of_a_killed_export(tmp_path):
    """core.train.export cleans up after itself, except when killed: then the runner does."""
    from paligemma_qgis.plugin.runner import run_worker

    code = (
        "import json, sys, tempfile, time; from pathlib import Path; "
        "o = json.loads(sys.stdin.readline())['options']; out = Path(o['out_dir']); "
        "tempfile.mkdtemp(prefix='.' + out.name + '.', suffix='.tmp', dir=out.parent); "
        "print(json.dumps({'event': 'progress', 'done': 1, 'total': 9, 'message': 'chip'}), flush=True); "
        "time.sleep(60)"
    )
    earlier = tmp_path / ".training.earlier.tmp"  # not this run's: left alone
    earlier.mkdir()
    go = []
    outcome = run_worker(
        {"task": "export", "options": {"out_dir": str(tmp_path / "training")}},
        [sys.executable, "-c", code],
        on_progress=lambda done, total, message: go.append(done),
        is_cancelled=lambda: bool(go),
        grace_s=1.0,
    )
    assert outcome.status == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == [earlier.name]
