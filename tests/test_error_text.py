"""Worker errors in the words of their front end: the dialog's fields, Processing's parameters.

The errors come from the real worker running the real core (no hand-made messages), so an
error that loses its code or field fails here; test_error_wording.py renders every code of
the catalogue in every front end.
"""

from __future__ import annotations

import re
import sys

import pytest
from bare_python import python_without

from paligemma_qgis.plugin.algorithms import SegmentWaterAlgorithm
from paligemma_qgis.plugin.error_text import EXPORT_DIALOG, SEGMENT_DIALOG, translate
from paligemma_qgis.plugin.options import export_job, segment_job
from paligemma_qgis.plugin.runner import run_worker
from paligemma_qgis.plugin.worker_env import worker_command, worker_env

FLAG = re.compile(r"(?<![\w-])--[a-z]")
PROCESSING = SegmentWaterAlgorithm.FRONT


def _fail(job: dict, python: str = sys.executable):
    outcome = run_worker(job, worker_command(python=python), env=worker_env())
    assert outcome.status == "error", outcome
    return outcome


def test_no_nir_band_says_choose_the_nir_band(water_scene, tmp_path):
    """The 4-band scene has no band descriptions: without a preset the water index has no NIR."""
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index")
    outcome = _fail(job)
    assert not FLAG.search(outcome.message)  # the core speaks no front end's words ...
    info = outcome.error_info
    assert (info["kind"], info["field"], info["code"]) == ("InputError", "nir", "band_unknown")
    options = job["options"]
    dialog = translate(outcome.message, outcome.error_info, options, SEGMENT_DIALOG)
    assert dialog.startswith("Green / NIR / SWIR band: the water index needs a NIR or SWIR band")
    assert "Preset" in dialog and not FLAG.search(dialog)
    processing = translate(outcome.message, outcome.error_info, options, PROCESSING)
    assert "or NIR (or SWIR) to its band number (Advanced parameters)" in processing and "BANDS" in processing
    assert not FLAG.search(processing)


def test_band_out_of_range_names_the_field(water_scene, tmp_path):
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip")
    job["options"]["green"] = 7
    outcome = _fail(job)
    assert outcome.error_info["field"] == "green" and outcome.error_info["code"] == "band_out_of_range"
    text = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert text == (
        f"{water_scene.path}: green band 7 does not exist (the raster has 4 bands); "
        "choose a band from 1 to 4 in 'Green / NIR / SWIR band'"
    )
    processing = translate(outcome.message, outcome.error_info, job["options"], PROCESSING)
    assert processing.endswith("; set GREEN to a band from 1 to 4")


@pytest.mark.slow
def test_missing_vae_points_at_the_download_button(water_scene, tiny_paligemma, tmp_path):
    job = segment_job(
        str(water_scene.path),
        str(tmp_path / "w.gpkg"),
        engine="paligemma",
        model=str(tiny_paligemma),
        vae=str(tmp_path / "vae-oid.npz"),
        device="cpu",
    )
    outcome = _fail(job)
    assert outcome.error_info["field"] == "vae" and outcome.error_info["code"] == "vae_missing"
    assert not FLAG.search(outcome.message)
    text = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert text.startswith("VAE file: ") and "Download…" in text and not FLAG.search(text)
    processing = translate(outcome.message, outcome.error_info, job["options"], PROCESSING)
    assert processing.startswith("VAE: ") and "set VAE to the file" in processing


def test_existing_output_points_at_the_overwrite_box(water_scene, tmp_path):
    output = tmp_path / "w.gpkg"
    output.write_bytes(b"")
    job = segment_job(str(water_scene.path), str(output), engine="water-index", preset="naip")
    outcome = _fail(job)
    assert outcome.error_info["kind"] == "OutputExistsError"
    text = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert text == f"GeoPackage: {output} exists. Tick 'Overwrite an existing file' or choose another name."


def test_export_folder_not_empty_points_at_the_replace_box(water_scene, tmp_path):
    out_dir = tmp_path / "train"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    job = export_job(str(water_scene.path), str(out_dir), "water-index", preset="naip")
    outcome = _fail(job)
    assert outcome.error_info["code"] == "train_folder_not_empty"
    text = translate(outcome.message, outcome.error_info, job["options"], EXPORT_DIALOG)
    assert text == f"Folder: {out_dir} exists. Tick 'Replace an earlier export' or choose another name."


def test_missing_module_is_named_by_its_package(water_scene, tmp_path):
    """affine is part of rasterio's install: people install rasterio, so the message says rasterio."""
    python = python_without(tmp_path, ("affine",))
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip")
    outcome = _fail(job, python)
    info = outcome.error_info
    assert info["code"] == "missing_packages" and info["kind"] == "ModuleNotFoundError"
    assert info["params"]["packages"] == ["rasterio"] and info["params"]["engine_only"] is None
    assert info["params"]["module"] == "affine"
    assert "has no rasterio, needed by every engine" in outcome.message
    text = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert text.startswith("The worker Python lacks rasterio (needed by every engine)")
    assert "affine" not in text


def test_gpu_memory_and_gated_model_in_dialog_words():
    gpu = translate("CUDA out of memory", {"field": "batch_size", "code": "gpu_memory"}, {}, SEGMENT_DIALOG)
    assert (
        gpu
        == "The GPU ran out of memory: lower the Batch size, choose a smaller model, or set Device to CPU."
    )
    gated = translate(
        "google/paligemma2-3b-mix-224 is a gated model ...",
        {"field": "model", "code": "model_gated"},
        {"model": "google/paligemma2-3b-mix-224"},
        SEGMENT_DIALOG,
    )
    assert gated.startswith("Model: google/paligemma2-3b-mix-224 cannot be downloaded")
    assert "https://huggingface.co/google/paligemma2-3b-mix-224" in gated
