"""Worker errors in the words of their front end: the dialog's fields, Processing's parameters.

The errors come from the real worker running the real core (no hand-made messages), so a
core message that gains a new command-line flag or loses its field fails here.
"""

from __future__ import annotations

import re
import sys

import pytest
from bare_python import python_without

from paligemma_qgis.plugin.error_text import (
    EXPORT_DIALOG,
    PROCESSING,
    SEGMENT_DIALOG,
    translate,
    without_flags,
)
from paligemma_qgis.plugin.options import export_job, segment_job
from paligemma_qgis.plugin.runner import run_worker
from paligemma_qgis.plugin.worker_env import worker_command, worker_env

FLAG = re.compile(r"(?<![\w-])--[a-z]")


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
    assert "Preset" in dialog and not FLAG.search(dialog)  # ... the dialog does not
    processing = translate(outcome.message, outcome.error_info, options, PROCESSING)
    assert "set NIR (or SWIR) to its band number" in processing and "BANDS" in processing
    assert not FLAG.search(processing)


def test_band_out_of_range_names_the_field(water_scene, tmp_path):
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip")
    job["options"]["green"] = 7
    outcome = _fail(job)
    assert outcome.error_info["field"] == "green" and outcome.error_info["code"] == "band_out_of_range"
    text = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert text == "Green / NIR / SWIR band: green band 7 does not exist (the raster has 4 bands)"


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
    text = translate(outcome.message, outcome.error_info, job["options"], EXPORT_DIALOG)
    assert text.startswith(f"Folder: {out_dir} exists.") and "Replace an earlier export" in text


def test_missing_module_is_named_by_its_package(water_scene, tmp_path):
    """affine is part of rasterio's install: people install rasterio, so the message says rasterio."""
    python = python_without(tmp_path, ("affine",))
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip")
    outcome = _fail(job, python)
    assert outcome.error_info["code"] == "missing_packages"
    assert outcome.error_info["packages"] == ["rasterio"] and outcome.error_info["engine_only"] is None
    assert "has no rasterio (affine comes with it), needed by every engine" in outcome.message
    text = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert text.startswith("The worker Python lacks rasterio (needed by every engine)")
    assert "affine" not in text


@pytest.mark.parametrize(
    "message",
    [
        "the raster has no NIR or SWIR band; use --nir/--swir, a preset, or the paligemma engine",
        "x.tif: preset 'sentinel2' expects 12 or 13 bands but the raster has 4; use --bands and "
        "--green/--nir/--swir instead",
        "device 'cuda' asked for, but this PyTorch (2.13.0+cpu) sees no CUDA GPU; install a CUDA build of "
        "torch or use --device cpu",
        "x.npz: sha256 abc is not the checksum of Google's vae-oid.npz (def). The file may be a partial "
        "download or a different VAE; to use it anyway, pass allow_custom_vae=True (command line: "
        "--allow-custom-vae).",
        "model folder /m does not exist. Give a folder (e.g. from `hf download x --local-dir /m`)",
        "lower --block-size or --some-future-flag 3",
    ],
)
def test_no_flag_survives_in_either_front_end(message):
    for front in (SEGMENT_DIALOG, EXPORT_DIALOG, PROCESSING):
        assert not FLAG.search(without_flags(message, front)), (front.name, without_flags(message, front))
    assert "Device to CPU" in without_flags(
        "torch or use --device cpu", SEGMENT_DIALOG
    ) and "DEVICE to CPU" in without_flags("torch or use --device cpu", PROCESSING)


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
