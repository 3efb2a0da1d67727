"""Issue 21 and issue 20 item 5: set-up that says what is so, the Hugging Face token in QGIS's
authentication database, fixes as buttons, and a Ray cluster trusted once per address.
Real headless QGIS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsSettings
from qgis.PyQt.QtWidgets import QApplication, QMessageBox
from synthetic_rasters import make_scene
from waiting import wait_until

from paligemma_qgis.core.environment import GEO_PACKAGES
from paligemma_qgis.plugin import hf_token, ray_trust
from paligemma_qgis.plugin.first_run import setup_question
from paligemma_qgis.plugin.job_dialog import make_task
from paligemma_qgis.plugin.messages import bar_texts
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.setup_fixes import INSTALL, MODEL, VAE, fixes, model_steps
from paligemma_qgis.plugin.setup_plan import model_download_text, plan_setup
from paligemma_qgis.plugin.worker_env import (
    ENV_PYTHON,
    SETTINGS_GROUP,
    managed_venv_dir,
    set_configured_python,
    set_ray_address,
    venv_python,
    worker_python,
)

TOKEN = "hf_testTOKENthatMustNotLeak123"


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.delenv(ENV_PYTHON, raising=False)
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    hf_token.forget_token()
    QgsSettings().remove(SETTINGS_GROUP)


@pytest.fixture
def auth_db():
    """QGIS's authentication database, unlocked with a master password (a user types it once)."""
    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword("test master password", True)
    return manager


def test_the_token_goes_into_the_authentication_database_not_a_plain_file(auth_db, tmp_path):
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    page = SetupCheckDialog()
    page.token_field.edit.setText(TOKEN)
    page.save()
    assert hf_token.load_token() == TOKEN and hf_token.stored_id()
    assert page.token_field.edit.text() == "" and page.token_field.forget_button.isVisibleTo(page)
    settings_file = Path(QgsSettings().fileName())
    QgsSettings().sync()
    assert TOKEN not in settings_file.read_text(encoding="utf-8", errors="replace")
    # Only a run that may download the model gets it, in its worker's environment.
    job = segment_job("a.tif", str(tmp_path / "w.gpkg"), engine="paligemma")
    task = make_task(job, tmp_path, sys.executable, ("Water in a", "Water in a"), None)
    assert task.env == {"HF_TOKEN": TOKEN}
    index = make_task(segment_job("a.tif", str(tmp_path / "x.gpkg"), engine="water-index"), tmp_path,
                      sys.executable, ("Water in a", "Water in a"), None)  # fmt: skip
    assert index.env == {}
    assert "HF_TOKEN" not in str(task.job) and TOKEN not in str(task.job)
    (step,) = model_steps(sys.executable, "google/paligemma2-3b-mix-224")
    assert step.env["HF_TOKEN"] == TOKEN and TOKEN not in step.shell()
    page.token_field.forget()
    assert hf_token.load_token() is None and hf_token.run_env(True) == {}
    page.deleteLater()


def test_the_paligemma_offer_names_the_model_download():
    text = model_download_text("google/paligemma2-3b-mix-224", token_stored=False)
    assert "google/paligemma2-3b-mix-224 from Hugging Face (about 6 GB, once)" in text
    assert "gated" in text and "https://huggingface.co/google/paligemma2-3b-mix-224" in text
    assert "token in Worker setup" in text
    assert "about 20 GB" in model_download_text("google/paligemma2-10b-mix-224", True)
    assert model_download_text("/models/my_finetune", False) == ""  # a folder: nothing to download


def test_what_qgis_python_has_is_not_offered_again(tmp_path):
    probe = {"python": "/usr/bin/python3", "python_version": "3.11.2", "system": "Linux", "machine": "x86_64",
             "missing": {"geo": [], "model": ["torch", "transformers"]}, "needs": ["geo", "model"],
             "gpu": {"present": False}, "vae": {"found": True}}  # fmt: skip
    plan = plan_setup(
        probe, "paligemma", "QGIS python", venv_dir=tmp_path / "venv", base_python="/usr/bin/python3"
    )
    titles = [s.title for s in plan.steps]
    assert "Install the geospatial packages" not in titles and "geospatial" not in plan.describe()
    assert titles[0] == "Create the worker environment" and any("torch" in t for t in titles)
    box = setup_question(None, plan, probe, "/usr/bin/python3", "QGIS python", water_index=True,
                         model="google/paligemma2-3b-mix-224")  # fmt: skip
    text = box.informativeText()
    assert "lacks torch, transformers (needed by the PaliGemma engine)" in text
    assert "gated" in text and "about 6 GB" in text
    assert box.water_index_button is not None and box.water_index_button.text() == "Use the water index"
    box.deleteLater()


def test_the_plugins_own_environment_is_not_called_chosen_in_worker_setup(tmp_path, monkeypatch):
    python = venv_python(managed_venv_dir())
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text("")
    try:
        set_configured_python(str(python))  # what a successful setup writes
        assert worker_python() == (str(python), "managed venv")
        set_configured_python(sys.executable)
        assert worker_python() == (sys.executable, "settings")
    finally:
        python.unlink()


def test_fixes_are_buttons_where_a_button_can_do_it(tmp_path):
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    check = {
        "packages": {**dict.fromkeys(GEO_PACKAGES.values(), "1"), "torch": None, "transformers": None},
        "vae": {"found": False}, "model": {"value": "google/paligemma2-3b-mix-224", "found": False, "local": False},
        "cuda": {}, "ready": {}, "fixes": [],
    }  # fmt: skip
    assert fixes(check) == [INSTALL, VAE, MODEL]
    ready = {**check, "packages": {k: "1" for k in check["packages"]}, "vae": {"found": True},
             "model": {"value": "google/x", "found": True}}  # fmt: skip
    assert fixes(ready) == []
    assert fixes({**ready, "model": {"value": "/my/folder", "found": False, "local": True}}) == []
    page = SetupCheckDialog()
    page.show()
    page.show_result(check)
    QApplication.processEvents()
    assert (
        page.install_button.isVisible() and page.weights_button.isVisible() and page.model_button.isVisible()
    )
    page.show_result(ready)
    assert not page.install_button.isVisible() and not page.model_button.isVisible()
    assert not page.weights_button.isVisible()
    assert page.height() <= 740
    page.close()
    page.deleteLater()


def test_a_ray_cluster_is_trusted_once_per_address(dlg, clean_project, tmp_path, queued_tasks, provider):
    import processing

    scene = make_scene(tmp_path / "a.tif")
    address = "ray://gpu.example.org:10001"
    set_ray_address(address)
    set_configured_python(sys.executable)
    dlg.set_raster_file(str(scene.path))
    dlg.preset_combo.setCurrentIndex(dlg.preset_combo.findData("naip"))
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    box = dlg.question_box
    assert box is not None and box.objectName() == "paligemmaRayTrust"
    assert "will run this plugin's code and receive the rasters" in box.text()
    assert "trust it as you would trust code running on this computer" in box.text()
    box.button(QMessageBox.StandardButton.No).click()
    QApplication.processEvents()
    assert ray_trust.trusted(address) is False and queued_tasks == [] and dlg.preflight is None
    assert "not trusted" in " ".join(bar_texts(dlg.message_bar))
    dlg.run()  # remembered: not asked again
    assert dlg.question_box is None and dlg.preflight is None
    # Processing cannot ask: it refuses an address not confirmed in Worker setup.
    with pytest.raises(QgsProcessingException, match="not trusted"):
        processing.run("paligemma:segment_water", {"INPUT": str(scene.path), "ENGINE": 1, "BANDS": "naip",
                                                   "RAY_ADDRESS": address, "OUTPUT": str(tmp_path / "p.gpkg")})  # fmt: skip
    ray_trust.remember(address, None)
    dlg.run()
    dlg.question_box.button(QMessageBox.StandardButton.Yes).click()
    QApplication.processEvents()
    assert ray_trust.trusted(address) is True
    wait_until(lambda: dlg.preflight is None, what="the worker check after the answer")
    # Empty and local never ask: nothing leaves this computer's own processes.
    assert ray_trust.trusted("") is True and ray_trust.trusted("local") is True


def test_use_the_water_index_instead_of_setting_up_paligemma(dlg, clean_project, tmp_path, queued_tasks):
    from bare_python import python_without

    scene = make_scene(tmp_path / "a.tif")
    set_configured_python(python_without(tmp_path, ("torch", "transformers")))
    dlg.set_raster_file(str(scene.path))
    dlg.engine_combo.setCurrentIndex(dlg.engine_combo.findData("paligemma"))
    dlg.bands_edit.setText("1,2,3")
    dlg.preset_combo.setCurrentIndex(dlg.preset_combo.findData("naip"))
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    wait_until(lambda: dlg.setup_box is not None, timeout=120, what="the setup question")
    assert dlg.setup_box.water_index_button is not None
    dlg.setup_box.water_index_button.click()
    wait_until(lambda: queued_tasks, timeout=120, what="the water-index run")
    assert dlg.engine() == "water-index" and queued_tasks[0].job["options"]["engine"] == "water-index"


def test_a_failed_vae_download_is_said_in_the_dialog_once(dlg, qgis_iface, tmp_path):
    """Issue 21: the VAE download's failure landed behind the dialog (QGIS's bar) and repeated
    itself. Pressed in the open dialog, its own bar says it, once, however often it is pressed."""
    from bare_python import python_without
    from waiting import wait_for_task

    from paligemma_qgis.plugin.messages import bar_texts, plugin_messages

    qgis_iface.messageBar().clearWidgets()
    set_configured_python(python_without(tmp_path, ("platformdirs",)))
    dlg.engine_combo.setCurrentIndex(dlg.engine_combo.findData("paligemma"))
    dlg.show()
    for _ in range(2):
        task = dlg.vae_widget.download()
        wait_for_task(task)
        QApplication.processEvents()
        assert task.succeeded is False
    shown = bar_texts(dlg.message_bar)
    assert len(shown) == 1 and shown[0].startswith("Download the VAE weights (vae-oid.npz) failed")
    assert plugin_messages(qgis_iface) == []  # nothing behind the dialog
    assert dlg.vae_widget.download_button.isEnabled()
