"""export and evaluate stage by stage, on numpy arrays and plain rows (no raster, no file).

test_export.py and test_evaluate.py run the commands on files; these call each stage with
small in-memory inputs, so a failure names the stage at fault.
"""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.inputs.grid import Chip
from paligemma_qgis.core.serial import from_data, to_data, unflatten
from paligemma_qgis.core.train.evaluate.geo import block_windows, score_window
from paligemma_qgis.core.train.evaluate.result import EvalResult, Scores
from paligemma_qgis.core.train.export.georef import assign_splits, keep_chips, score_chip
from paligemma_qgis.core.train.export.labels import ChipLabel
from paligemma_qgis.core.train.export.pairs import split_pairs
from paligemma_qgis.core.train.export.summary import ExportSummary
from paligemma_qgis.core.train.options import EvaluateOptions, ExportOptions, FinetuneOptions, PairsOptions


def _chip(i: int, row: int, col: int, size: int = 4) -> Chip:
    return Chip(i, Window(col, row, size, size), size)


def _label(water: np.ndarray, labelled: np.ndarray | None = None) -> ChipLabel:
    return ChipLabel(water=water, labelled=np.ones_like(water) if labelled is None else labelled)


def test_score_chip_removes_water_under_nodata_and_flags_misalignment():
    valid = np.ones((4, 4), bool)
    valid[0] = False  # a row of nodata
    water = np.zeros((4, 4), bool)
    water[:2, :2] = True  # two pixels of it under nodata
    row, exported = score_chip("a.png", _chip(7, 8, 4), _label(water), valid, max_nodata_fraction=0.5)
    assert not exported[0].any() and exported.sum() == 2
    assert (row["chip_id"], row["row_off"], row["col_off"], row["split"]) == (7, 8, 4, "")
    assert row["nodata_fraction"] == 0.25 and row["water_fraction"] == pytest.approx(round(2 / 12, 4))
    assert row["labels_in_nodata"] == 0.125 and row["misaligned"]


@pytest.mark.parametrize(
    ("valid_rows", "labelled_rows", "reason"),
    [(1, 4, "nodata"), (4, 1, "unlabelled"), (3, 4, None)],
)
def test_score_chip_skips_chips_without_enough_data_or_labels(valid_rows, labelled_rows, reason):
    valid = np.zeros((4, 4), bool)
    valid[:valid_rows] = True
    labelled = np.zeros((4, 4), bool)
    labelled[:labelled_rows] = True
    row, _ = score_chip("a.png", _chip(0, 0, 0), _label(np.zeros((4, 4), bool), labelled), valid, 0.5)
    assert (row["split"], row["reason"]) == (("skipped", reason) if reason else ("", ""))


def _rows(n_objects: list[int]) -> list:
    """Usable chips of a 4 x 4 grid of 4-pixel chips, with these object counts."""
    rows = []
    for i, n in enumerate(n_objects):
        row, _ = score_chip(
            f"c{i}.png",
            _chip(i, 4 * (i // 4), 4 * (i % 4)),
            _label(np.zeros((4, 4), bool)),
            np.ones((4, 4), bool),
            0.5,
        )
        row["n_objects"], row["codec_iou"] = n, (0.5 if n else None)
        rows.append(row)
    return rows


def test_spatial_split_keeps_blocks_whole():
    rows = _rows([1] * 16)
    opts = ExportOptions(
        raster="r.tif", out_dir="o", labels="water-index", size=4, block_size=2, valid_fraction=0.25
    )
    summary = ExportSummary(out_dir="o")
    assign_splits(rows, [(4, 4)] * 16, opts, summary)
    splits = np.array([r["split"] for r in rows]).reshape(4, 4)
    for br in (0, 2):
        for bc in (0, 2):
            assert len(set(splits[br : br + 2, bc : bc + 2].ravel())) == 1  # a 2 x 2 block goes whole
    assert (splits == "valid").sum() == 4 and not summary.warnings


def test_one_block_gives_no_validation_chips_and_says_so():
    rows = _rows([1] * 4)
    opts = ExportOptions(raster="r.tif", out_dir="o", labels="water-index", size=4, block_size=4)
    summary = ExportSummary(out_dir="o")
    assign_splits(rows, [(4, 4)] * 4, opts, summary)
    assert {r["split"] for r in rows} == {"train"} and "single spatial block" in summary.warnings[0]


def test_keep_chips_drops_empty_chips_and_counts(tmp_path):
    rows = _rows([2, 0, 0, 3])
    for r in rows:
        r["split"] = "train"
        (tmp_path / r["name"]).write_bytes(b"png")
    rows[2]["split"], rows[2]["reason"] = "skipped", "nodata"
    records = [{"image": r["name"], "prefix": "segment water", "suffix": "x"} for r in rows]
    opts = ExportOptions(raster="r.tif", out_dir="o", labels="water-index", empty_policy="drop")
    summary = ExportSummary(out_dir="o")
    per_split = keep_chips(rows, records, opts, tmp_path, summary)
    assert [r["image"] for r in per_split["train"]] == ["c0.png", "c3.png"] and per_split["valid"] == []
    assert [r["written"] for r in rows] == [True, False, False, True]
    assert rows[1]["reason"] == "empty (drop)" and not (tmp_path / "c1.png").exists()
    assert summary.not_written == {"nodata": 1, "empty": 1}
    assert (summary.n_objects, summary.max_objects_per_chip, summary.mean_codec_iou) == (5, 3, 0.5)


def test_pairs_split_is_seeded():
    assert split_pairs(10, 0.3, seed=1) == split_pairs(10, 0.3, seed=1)
    assert split_pairs(10, 0.3, seed=1).count("valid") == 3 and split_pairs(4, 0.0, 0) == ["train"] * 4


def test_score_window_leaves_out_and_counts_nodata():
    """Truth nodata and pixels no chip saw are counted, not scored as land."""
    base = np.array([[1, 1, 1, 1, 0]], bool)  # the last pixel: nodata in the reference raster
    truth = (np.array([[1, 1, 0, 0, 0]], bool), np.array([[1, 1, 1, 0, 1]], bool))  # pixel 3 unlabelled
    pred = (np.array([[1, 0, 1, 1, 1]], bool), np.array([[1, 1, 0, 1, 1]], bool))  # pixel 2 not seen
    result = EvalResult(mode="raster", scores=Scores())
    score_window(result, base, truth, pred)
    assert (result.truth_nodata_pixels, result.pred_nodata_pixels, result.pixels_evaluated) == (1, 1, 2)
    assert (result.scores.tp, result.scores.fp, result.scores.fn, result.scores.tn) == (1, 0, 1, 0)


def test_block_windows_cover_the_grid_once():
    wins = block_windows(5, 3, 2)
    assert [(w.col_off, w.row_off, w.width, w.height) for w in wins][:3] == [
        (0, 0, 2, 2),
        (2, 0, 2, 2),
        (4, 0, 1, 2),
    ]
    assert sum(w.width * w.height for w in wins) == 15


def test_options_round_trip_and_refuse_bad_values_by_field():
    export = ExportOptions(raster="r.tif", out_dir="o", labels="l.gpkg", bands=[3, 2, 1])
    assert from_data(ExportOptions, to_data(export)) == export
    assert (
        unflatten(ExportOptions, {"raster": "r.tif", "out_dir": "o", "labels": "l.gpkg", "bands": "3,2,1"})
        == export
    )
    finetune = FinetuneOptions(data_dir="d", out_dir="m", model="x", lora_rank=8)
    assert finetune.lora_alpha == 16 and to_data(finetune)["lora_alpha"] == 16
    assert (
        EvaluateOptions(pred="p.jsonl", truth="t").is_pairs
        and not EvaluateOptions(pred="p.gpkg", truth="t").is_pairs
    )
    for cls, values, field in (
        (
            PairsOptions,
            {"images": "i", "masks": "m", "out_dir": "o", "valid_fraction": -0.1},
            "valid_fraction",
        ),
        (PairsOptions, {"images": "i", "out_dir": "o"}, "masks"),
        (FinetuneOptions, {"data_dir": "d", "out_dir": "m", "model": "x", "grad_accum": 0}, "grad_accum"),
        (ExportOptions, {"raster": "r", "out_dir": "o", "labels": "l", "preset": "spot"}, "preset"),
        (EvaluateOptions, {"truth": "t"}, "pred"),
    ):
        with pytest.raises(InputError) as refused:
            from_data(cls, values)
        assert refused.value.field == field, (cls.__name__, values)
