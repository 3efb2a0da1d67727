"""evaluate: pixel scores on a reference grid, pairs from model text, invalid-output share."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from shapely.geometry import box
from synthetic_rasters import make_scene

from paligemma_qgis.cli import main
from paligemma_qgis.cli.wording import cli_message
from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.model.codec import MaskCodec
from paligemma_qgis.core.model.masks import decode_objects, encode_instances
from paligemma_qgis.core.model.tokens import format_objects, parse_segmentation
from paligemma_qgis.core.train.evaluate import Scores, evaluate, evaluate_geo, evaluate_pairs
from paligemma_qgis.core.train.options import EvaluateOptions


def test_scores_math():
    p = np.array([1, 1, 0, 0, 1], bool)
    t = np.array([1, 0, 1, 0, 1], bool)
    s = Scores()
    s.add(p, t)
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 1, 1, 1)
    assert s.iou == pytest.approx(0.5)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert Scores().iou is None  # nothing to score is not a perfect score


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    sc = make_scene(d / "scene.tif", collar=True)
    return sc, d


def _expected(pred_px_geoms, sc, domain_extra=None):
    from rasterio.features import rasterize

    shape = (sc.height, sc.width)
    pred = rasterize(pred_px_geoms, out_shape=shape) > 0 if pred_px_geoms else np.zeros(shape, bool)
    truth = sc.water_mask()
    dom = sc.valid_mask() if domain_extra is None else sc.valid_mask() & domain_extra
    s = Scores()
    s.add(pred, truth, dom)
    return s


def test_geo_vector_truth_known_scores(scene):
    sc, d = scene
    truth = d / "truth.geojson"
    gpd.GeoDataFrame(geometry=sc.water, crs=sc.crs).to_crs("EPSG:4326").to_file(truth)
    # prediction: only the first lake and a false positive square, written as segment does
    fp_px = box(20, 300, 80, 360)
    pred_px = [sc.water_px[0], fp_px]
    pred = d / "pred.gpkg"
    gpd.GeoDataFrame(
        {"label": ["water", "water"]}, geometry=[sc.to_crs_geom(g) for g in pred_px], crs=sc.crs
    ).to_file(pred, layer="water")
    r = evaluate_geo(EvaluateOptions(pred=pred, truth=truth, reference_raster=sc.path))
    exp = _expected(pred_px, sc)
    # truth went through EPSG:4326 and back: edges move by far less than a pixel
    assert r.scores.iou == pytest.approx(exp.iou, abs=0.01)
    assert r.scores.precision == pytest.approx(exp.precision, abs=0.01)
    assert r.scores.recall == pytest.approx(exp.recall, abs=0.01)
    assert r.pixels_evaluated == sc.valid_mask().sum()  # nodata collar left out
    assert r.n_outputs == 0 and r.invalid_share is None
    with pytest.raises(InputError, match="a vector truth needs a reference grid") as no_grid:
        evaluate_geo(EvaluateOptions(pred=pred, truth=truth))
    assert cli_message(no_grid.value).endswith("; pass one with --raster")


def test_geo_mask_truth_and_chips_statuses(scene):
    sc, d = scene
    truth = d / "truth.tif"
    m = np.where(sc.valid_mask(), sc.water_mask().astype("uint8"), 255).astype("uint8")
    with rasterio.open(
        truth,
        "w",
        driver="GTiff",
        width=sc.width,
        height=sc.height,
        count=1,
        dtype="uint8",
        crs=sc.crs,
        transform=sc.transform,
        nodata=255,
    ) as ds:
        ds.write(m, 1)
    pred = d / "pred2.gpkg"
    gpd.GeoDataFrame({"label": ["water"] * len(sc.water)}, geometry=sc.water, crs=sc.crs).to_file(
        pred, layer="water"
    )
    # chips layer: left half only, with the texts the pipeline keeps
    good = "<loc0000><loc0000><loc0500><loc0500>" + "".join(f"<seg{i:03d}>" for i in range(16)) + " water"
    texts = [good, "", good[:-6] + "<seg001> water", "<loc0100><loc0100>"]
    t = sc.transform
    half = [box(*(t * (0, sc.height)), *(t * (sc.width // 2, 0)))] * 4
    gpd.GeoDataFrame({"status": ["ok"] * 4, "text": texts}, geometry=half, crs=sc.crs).to_file(
        pred, layer="chips"
    )
    r = evaluate(EvaluateOptions(pred=pred, truth=truth))
    assert r.scores.iou == pytest.approx(1.0)
    left = np.zeros((sc.height, sc.width), bool)
    left[:, : sc.width // 2] = True
    assert r.pixels_evaluated == (sc.valid_mask() & left).sum()
    assert r.n_outputs == 4 and r.n_invalid_outputs == 2 and r.n_empty_outputs == 1
    assert r.invalid_share == pytest.approx(0.5)
    assert "17 seg tokens" in r.reasons


@pytest.fixture(scope="module")
def codec(vae_npz):
    return MaskCodec.from_npz(vae_npz, allow_custom_vae=True, device="cpu")


def test_pairs_from_model_text(tmp_path, codec, vae_npz):
    masks = tmp_path / "masks"
    masks.mkdir()
    lines, expected = [], Scores()
    for i in range(3):
        m = np.zeros((80, 120), bool)
        m[10 + 5 * i : 50, 20 : 70 + 10 * i] = True
        Image.fromarray((m * 255).astype(np.uint8)).save(masks / f"im{i}.png")
        objs = encode_instances(codec, [m])
        text = format_objects(objs)
        expected.add(decode_objects(codec, parse_segmentation(text), 80, 120), m)
        lines.append({"image": f"im{i}.jpg", "model_output": text})
    lines.append(
        {"image": "im0.jpg", "model_output": "<loc0000><loc0000><loc1023>"}
    )  # cut off: invalid, no water
    expected.add(np.zeros((80, 120), bool), np.asarray(Image.open(masks / "im0.png")) > 150)
    lines.append({"image": "missing.jpg", "model_output": ""})
    pred = tmp_path / "out.jsonl"
    pred.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = evaluate_pairs(EvaluateOptions(pred=pred, truth=masks, vae=vae_npz, allow_custom_vae=True))
    assert r.n_items == 4 and r.n_outputs == 5
    assert r.n_invalid_outputs == 1 and r.n_empty_outputs == 1
    assert (r.scores.tp, r.scores.fp, r.scores.fn) == (expected.tp, expected.fp, expected.fn)
    assert any("no truth" in n for n in r.notes)


def test_cli_evaluate_json(tmp_path, vae_npz, capsys):
    masks = tmp_path / "m"
    masks.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "a.png")
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"image": "a.png", "model_output": ""}) + "\n")
    assert (
        main(["evaluate", str(pred), str(masks), "--json", "--vae", str(vae_npz), "--allow-custom-vae"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["scores"]["tn"] == 100 and out["scores"]["iou"] is None and out["invalid_share"] == 0.0
    assert main(["evaluate", str(tmp_path / "nope.gpkg"), str(masks)]) == 1


@pytest.mark.shared_data
def test_real_malformed_outputs_counted(shared_data: Path, tmp_path):
    """The real fine-tuned outputs: empty, cut-off and 17-seg-token answers are told apart."""
    pred = shared_data / "paligemma_reference" / "model_outputs_finetuned.jsonl"
    masks = shared_data / "water_bodies_kaggle_subset" / "Masks"
    records = [json.loads(x) for x in pred.read_text().splitlines() if x.strip()]
    r = evaluate_pairs(
        EvaluateOptions(pred=pred, truth=masks), codec=object()
    )  # no image of these is in the subset: counts only
    assert r.n_outputs == len(records) == 21
    assert r.n_items == 0
    assert r.n_empty_outputs == sum(1 for x in records if not x["model_output"].strip())
    has17 = [x for x in records if x["model_output"].count("<seg") == 17]
    assert has17 and r.n_invalid_outputs >= len(has17)
    assert 0 < r.invalid_share < 1


def test_statuses_without_text_and_water_index_chips():
    from paligemma_qgis.core.train.evaluate import EvalResult, count_outputs, count_statuses

    r = EvalResult(mode="raster", scores=Scores())
    count_statuses(
        r, ["2 objects ok", "1 ok, 1 rejected: 17 seg tokens", "empty", "error: CUDA out of memory"]
    )
    assert (r.n_outputs, r.n_invalid_outputs, r.n_empty_outputs, r.n_rejected_objects) == (4, 2, 1, 1)
    r = EvalResult(mode="raster", scores=Scores())
    count_outputs(r, [None, None])  # water-index chips carry no model text
    assert r.n_outputs == 0 and r.invalid_share is None


def test_skipped_chips_are_not_model_outputs():
    """Chips skipped for missing data never went to the model: they must not dilute the invalid share."""
    from paligemma_qgis.core.train.evaluate import EvalResult, count_statuses

    r = EvalResult(mode="raster", scores=Scores())
    count_statuses(r, ["1 ok, 1 rejected: truncated", "skipped: 3.0% valid", "skipped: no valid pixels"])
    assert (r.n_outputs, r.n_invalid_outputs) == (1, 1) and r.invalid_share == 1.0


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    """evaluate and finetune read JSONL through one reader: a bad line is named, not a traceback."""
    from paligemma_qgis.core.errors import InputError
    from paligemma_qgis.core.inputs.files import read_jsonl
    from paligemma_qgis.core.train.finetune import read_split

    path = tmp_path / "train.jsonl"
    path.write_text('{"image": "a.png", "prefix": "segment water", "suffix": ""}\n\n{"image": "b.png"}\n')
    assert [n for n, _ in read_jsonl(path, ("image",))] == [1, 3]  # blank lines skipped, numbers kept
    with pytest.raises(InputError, match=r"train.jsonl: line 3 needs the key\(s\) image, prefix, suffix"):
        read_split(tmp_path, "train")
    path.write_text('{"image": "a.png"}\n{"image": \n')
    with pytest.raises(InputError, match="train.jsonl: line 2 is not JSON"):
        read_jsonl(path, ("image",))
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(InputError, match="train.jsonl: cannot read"):
        read_jsonl(path, ("image",))


def test_truth_and_prediction_nodata_are_left_out_and_counted(tmp_path):
    """Sen1Floods11 labels mark 'no label' with -1: scored as land it would invent false positives."""
    sc = make_scene(tmp_path / "scene.tif", width=200, height=100)
    t = sc.transform
    truth = np.zeros((100, 200), np.int16)
    truth[:, :100] = -1  # left half: no label (undeclared, as in Sen1Floods11)
    truth[20:60, 120:160] = 1
    with rasterio.open(
        tmp_path / "truth.tif",
        "w",
        driver="GTiff",
        width=200,
        height=100,
        count=1,
        dtype="int16",
        crs=sc.crs,
        transform=t,
    ) as ds:
        ds.write(truth, 1)
    # predicted water: the truth's square and a false square in the unlabelled half
    pred_px = [box(120, 20, 160, 60), box(20, 20, 60, 60)]
    pred = tmp_path / "pred.gpkg"
    polys = [box(*(t * (x0, y1)), *(t * (x1, y0))) for x0, y0, x1, y1 in (g.bounds for g in pred_px)]
    gpd.GeoDataFrame({"label": ["water"] * 2}, geometry=polys, crs=sc.crs).to_file(pred, layer="water")
    # chips: the model saw the whole scene except the right-most 20 columns ("skipped")
    chips = [box(*(t * (0, 100)), *(t * (180, 0))), box(*(t * (180, 100)), *(t * (200, 0)))]
    gpd.GeoDataFrame({"status": ["ok", "skipped: 1.0% valid"]}, geometry=chips, crs=sc.crs).to_file(
        pred, layer="chips"
    )

    scored_as_land = evaluate(EvaluateOptions(pred=pred, truth=tmp_path / "truth.tif"))
    assert scored_as_land.scores.fp == 40 * 40  # the -1 half counted as land: a false positive
    r = evaluate(EvaluateOptions(pred=pred, truth=tmp_path / "truth.tif", truth_nodata=-1))
    assert (r.scores.tp, r.scores.fp, r.scores.fn) == (40 * 40, 0, 0) and r.scores.iou == 1.0
    assert r.truth_nodata_pixels == 100 * 100
    assert r.pred_nodata_pixels == 20 * 100  # the skipped chip: no prediction there
    assert r.pixels_evaluated == 80 * 100
    assert "truth nodata, left out" in r.table() and "prediction nodata, left out" in r.table()

    elsewhere = tmp_path / "elsewhere.tif"
    with rasterio.open(tmp_path / "truth.tif") as src:
        profile = dict(src.profile, transform=t * Affine.translation(0, 10_000), nodata=-1)
    with rasterio.open(elsewhere, "w", **profile) as ds:
        ds.write(truth, 1)
    with pytest.raises(InputError, match="no chip of the prediction overlaps"):
        evaluate(EvaluateOptions(pred=pred, truth=elsewhere))
    assert main(["evaluate", str(pred), str(elsewhere)]) == 1
