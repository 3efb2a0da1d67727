"""End to end: synthetic scenes with known water -> GeoPackage; seams, nodata, CRSs, cancel, outputs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from synthetic_rasters import equal_area_m2, iou, make_scene

from paligemma_qgis.core.errors import InputError, OutputExistsError
from paligemma_qgis.core.model.segmenter import ChipResult, fixed
from paligemma_qgis.core.model.water_index import WaterIndexSegmenter
from paligemma_qgis.core.progress import CallbackProgress, Cancelled
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.specs import segment_spec


class Recording(WaterIndexSegmenter):
    """The water index, recording every chip it is handed (with its RGB rendering)."""

    needs_rgb = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[tuple[int, tuple, np.ndarray, np.ndarray]] = []

    def segment(self, batch):
        for i, cid in enumerate(batch.ids):
            self.seen.append((cid, batch.rgb[i].shape, batch.rgb[i].copy(), batch.valid[i].copy()))
        return super().segment(batch)


def _run(scene, tmp_path, **kw):
    opts = segment_spec(raster=str(scene.path), output=str(tmp_path / "out.gpkg"), nir=4, **kw)
    summary = segment_raster(opts)
    water = pyogrio.read_dataframe(summary.output, layer="water")
    return summary, water


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326", "EPSG:3857"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_known_shapes_in_every_crs(tmp_path, crs: str, dtype: str) -> None:
    scene = make_scene(tmp_path / "s.tif", crs=crs, dtype=dtype)
    summary, water = _run(scene, tmp_path)
    assert water.crs.to_string() == crs
    truth = scene.water
    # shapes: IoU of everything, and of each body with the polygon that overlaps it most
    assert iou(shapely.union_all(water.geometry.values), shapely.union_all(truth)) >= 0.98
    # one polygon per water body, across chip seams (lake 1 spans four chips)
    assert len(water) == len(truth)
    for body in truth:
        overlaps = shapely.area(shapely.intersection(water.geometry.values, body))
        best = water.iloc[int(np.argmax(overlaps))]
        assert iou(best.geometry, body) >= 0.95
        expected_m2 = equal_area_m2(body, crs)
        tolerance = 0.01 if body.area / abs(scene.transform.a * scene.transform.e) > 5000 else 0.05
        assert best.area_m2 == pytest.approx(expected_m2, rel=tolerance)
    assert summary.water_area_km2 * 1e6 == pytest.approx(sum(equal_area_m2(b, crs) for b in truth), rel=0.01)
    assert summary.chips == 9 and summary.skipped == 0 and summary.polygons == len(truth)


@pytest.mark.parametrize("mask", ["nodata", "alpha", "internal"])
def test_nodata_never_water(tmp_path, mask: str) -> None:
    """Under an alpha band or internal mask the collar holds water-like values: still no water there."""
    scene = make_scene(tmp_path / "s.tif", collar=True, mask=mask)
    summary, water = _run(scene, tmp_path, mask_tif=str(tmp_path / "m.tif"))
    footprint = scene.footprint
    outside = shapely.union_all(water.geometry.values).difference(footprint.buffer(2 * scene.transform.a))
    assert outside.area == 0
    assert iou(shapely.union_all(water.geometry.values), shapely.union_all(scene.water)) >= 0.97
    with rasterio.open(tmp_path / "m.tif") as m:
        arr = m.read(1)
    assert not (arr[~scene.valid_mask()] == 1).any()
    assert summary.skipped == 0  # the rotated footprint leaves every chip > 5% valid


def test_no_padded_chip_reaches_the_segmenter(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=601, height=459, collar=True, mask="alpha")
    seg = Recording(nir=4)
    opts = segment_spec(raster=str(scene.path), output=str(tmp_path / "o.gpkg"), overlap=32)
    segment_raster(opts, segmenter=fixed(seg))
    truth_valid = scene.valid_mask()
    from paligemma_qgis.core.inputs.grid import chip_windows

    windows = {c.id: c.window for c in chip_windows(601, 459, 224, 32)}
    assert len(seg.seen) == len(windows)
    for cid, shape, rgb, valid in seg.seen:
        assert shape == (224, 224, 3)
        w = windows[cid]
        r0, c0 = int(w.row_off), int(w.col_off)
        # valid is exactly the raster's valid pixels there: nothing padded, nothing invented
        assert (valid == truth_valid[r0 : r0 + 224, c0 : c0 + 224]).all()
        assert (rgb[~valid] == 0).all() and (rgb[valid].max(axis=-1) > 0).all()


def test_small_raster_is_resampled_to_a_full_chip(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=150, height=100, asphalt=False)
    seg = Recording(nir=4)
    opts = segment_spec(
        raster=str(scene.path), output=str(tmp_path / "o.gpkg"), mask_tif=str(tmp_path / "m.tif")
    )
    summary = segment_raster(opts, segmenter=fixed(seg))
    assert summary.chips == 1 and seg.seen[0][1] == (224, 224, 3)
    # nearest up to 224 px and back down is exact: the mask is the truth pixel for pixel
    with rasterio.open(tmp_path / "m.tif") as m:
        assert (m.width, m.height) == (150, 100)
        assert ((m.read(1) == 1) == scene.water_mask()).all()


def test_skipped_chips_are_counted_and_listed(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=900, height=300)
    # blank out the right third with nodata
    with rasterio.open(scene.path, "r+") as ds:
        data = ds.read()
        data[:, :, 600:] = 0
        ds.write(data)
    summary, _ = _run(scene, tmp_path)
    chips = pyogrio.read_dataframe(summary.output, layer="chips")
    assert summary.skipped == (chips.status.str.startswith("skipped")).sum() > 0
    assert summary.chips + summary.skipped == len(chips)
    assert set(chips.columns) >= {"chip_id", "status", "text", "n_objects", "geometry"}
    assert chips.crs.to_string() == scene.crs


class _Canceller:
    def __init__(self, after: int):
        self.after, self.calls = after, 0

    def report(self, done, total, message=""):
        if message.endswith("segmenting chips"):
            self.calls += 1

    def cancelled(self):
        return self.calls >= self.after


def test_cancel_leaves_no_output(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=1200, height=900)
    out_dir = tmp_path / "out"
    work = tmp_path / "work"
    work.mkdir()
    opts = segment_spec(
        raster=str(scene.path),
        output=str(out_dir / "o.gpkg"),
        nir=4,
        mask_tif=str(out_dir / "m.tif"),
        workdir=str(work),
        batch_size=2,
    )
    progress = _Canceller(after=2)
    with pytest.raises(Cancelled) as cancelled:
        segment_raster(opts, progress)
    assert "kept" not in str(cancelled.value)  # nothing finished: nothing to continue from
    assert list(out_dir.iterdir()) == []  # no output, no mask, no lock, no journal, no temp file
    assert list(work.iterdir()) == []  # mosaic temp files removed


def test_existing_output_refused_before_work(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=300, height=300)
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"keep me")
    seg = Recording(nir=4)
    with pytest.raises(OutputExistsError, match="o.gpkg"):
        segment_raster(segment_spec(raster=str(scene.path), output=str(out)), segmenter=fixed(seg))
    assert seg.seen == [] and out.read_bytes() == b"keep me"
    summary = segment_raster(
        segment_spec(raster=str(scene.path), output=str(out), overwrite=True), segmenter=fixed(seg)
    )
    assert pyogrio.list_layers(summary.output)[:, 0].tolist() == ["water", "chips", "scenes", "run"]


def test_run_table_records_how_the_layer_was_made(tmp_path) -> None:
    """The GeoPackage says which engine, threshold, options and raster made its polygons."""
    from paligemma_qgis import __version__

    scene = make_scene(tmp_path / "s.tif", width=300, height=300)
    out = tmp_path / "o.gpkg"
    summary = segment_raster(
        segment_spec(
            raster=str(scene.path), output=str(out), engine="water-index", nir=4, overlap=16, min_area_m2=50
        )
    )
    table = pyogrio.read_dataframe(out, layer="run", read_geometry=False)
    run = dict(zip(table["key"], table["value"], strict=True))
    assert run["tool"] == f"paligemma_qgis {__version__}"
    assert run["engine"] == "water-index" and run["raster"] == str(scene.path)
    assert run["raster_crs"] == "EPSG:32633"
    assert run["option.overlap"] == "16" and run["option.min_area_m2"] == "50"
    assert float(run["engine.threshold"]) == pytest.approx(summary.details["threshold"])
    assert run["engine.threshold_source"] == "auto"  # the default threshold method
    assert 0 <= float(run["engine.quality"]) <= 1 and run["engine.unsure"] in ("true", "false")
    assert int(run["chips"]) == summary.chips and int(run["skipped"]) == summary.skipped
    # The per-scene self-check travels to the scenes layer too.
    scenes = pyogrio.read_dataframe(out, layer="scenes", read_geometry=False)
    assert scenes["threshold"].tolist() == pytest.approx([summary.details["threshold"]])
    assert scenes["quality"].tolist() == pytest.approx([float(run["engine.quality"])])
    assert run["created_utc"].endswith("+00:00")


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(output="x.shp"), InputError, "GeoPackage"),
        (dict(overlap=224), InputError, "overlap"),
        (dict(nir=None), InputError, "has no NIR or SWIR band"),
        (dict(aoi="0,0,1,1,EPSG:4326"), InputError, "does not overlap"),
    ],
)
def test_input_errors(tmp_path, kwargs, err, match) -> None:
    scene = make_scene(tmp_path / "s.tif", width=300, height=300)
    opts = dict(raster=str(scene.path), output=str(tmp_path / "o.gpkg"), nir=4)
    opts.update(kwargs)
    if not opts["output"].startswith("/"):
        opts["output"] = str(tmp_path / opts["output"])
    with pytest.raises(err, match=match):
        segment_raster(segment_spec(**opts))


def test_aoi_selects_chips_and_clips_water(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif")
    t = scene.transform
    # lake 1 spans x 120..280 px; keep an AOI over its left half only, given in EPSG:4326
    from pyproj import Transformer

    to_ll = Transformer.from_crs(scene.crs, "EPSG:4326", always_xy=True)
    x0, y0 = to_ll.transform(t.c + 100 * t.a, t.f + 100 * t.e)
    x1, y1 = to_ll.transform(t.c + 200 * t.a, t.f + 300 * t.e)
    seg = Recording(nir=4)
    opts = segment_spec(
        raster=str(scene.path),
        output=str(tmp_path / "o.gpkg"),
        aoi=[x0, y1, x1, y0],
        aoi_crs="EPSG:4326",
        overlap=32,
    )
    summary = segment_raster(opts, segmenter=fixed(seg))
    assert summary.chips == 6  # rows 100..300 touch all 3 chip rows, cols 100..200 two of 3 columns
    water = pyogrio.read_dataframe(summary.output, layer="water")
    left_x = t.c + 200 * t.a
    assert water.total_bounds[2] <= left_x + 2 * t.a  # clipped at the AOI's east edge
    assert len(water) == 1


def test_segmenter_contract_is_checked(tmp_path) -> None:
    class Bad(WaterIndexSegmenter):
        def segment(self, batch):
            return [ChipResult(water=np.zeros((10, 10), bool)) for _ in batch.ids]

    scene = make_scene(tmp_path / "s.tif", width=300, height=300)
    with pytest.raises(RuntimeError, match="mask"):
        segment_raster(
            segment_spec(raster=str(scene.path), output=str(tmp_path / "o.gpkg")), segmenter=fixed(Bad(nir=4))
        )
    assert not (tmp_path / "o.gpkg").exists()


def test_cli_segment(tmp_path, capsys) -> None:
    from paligemma_qgis.cli import segment

    scene = make_scene(tmp_path / "s.tif", swir=True, describe=True)
    parser = argparse.ArgumentParser()
    segment.add_parser(parser.add_subparsers())
    out = tmp_path / "cli.gpkg"
    args = parser.parse_args(
        [
            "segment",
            str(scene.path),
            str(out),
            "--engine",
            "water-index",
            "--min-area",
            "1000",
            "--out-crs",
            "EPSG:4326",
        ]
    )
    assert args.func(args) == 0
    line = capsys.readouterr().out
    assert "chips" in line and "km2" in line and "chips/s" in line
    water = pyogrio.read_dataframe(out, layer="water")
    assert water.crs.to_epsg() == 4326 and len(water) == 4
    args = parser.parse_args(
        ["segment", str(scene.path), str(out), "--json", "--overwrite", "--index", "ndwi"]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["details"]["index"] == "ndwi" and summary["chips"] == 9


def test_progress_reports_reach_the_total(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif")
    seen = []
    progress = CallbackProgress(on_report=lambda d, t, m: seen.append((d, t, m)))
    segment_raster(segment_spec(raster=str(scene.path), output=str(tmp_path / "o.gpkg"), nir=4), progress)
    chips = [(d, t) for d, t, m in seen if m.endswith("segmenting chips")]
    assert chips[-1] == (9, 9) and all(d <= t for d, t in chips)
    assert seen[-1][2] == "done"


@pytest.mark.shared_data
def test_shared_naip_against_reference_mask(shared_data, tmp_path) -> None:
    raster = shared_data / "rasters" / "opengeos_naip_m_4709963_se_14_1_20200831.tif"
    reference = shared_data / "rasters" / "derived_naip_m_4709963_se_14_1_20200831_ndwi_gt0.2_mask.tif"
    opts = segment_spec(
        raster=str(raster), output=str(tmp_path / "n.gpkg"), preset="naip", mask_tif=str(tmp_path / "n.tif")
    )
    summary = segment_raster(opts)
    with rasterio.open(tmp_path / "n.tif") as a, rasterio.open(reference) as b:
        ours, ref = a.read(1), b.read(1)
        assert a.transform == b.transform
    both = (ours != 255) & (ref != 255)
    w1, w2 = (ours == 1) & both, (ref == 1) & both
    assert (w1 & w2).sum() / (w1 | w2).sum() >= 0.95
    assert 0.2 < summary.details["threshold"] < 0.3 or summary.details["threshold"] > 0.1


@pytest.mark.shared_data
def test_shared_sentinel2_mndwi(shared_data, tmp_path) -> None:
    raster = shared_data / "rasters" / "sen1floods11_Spain_7370579_S2Hand.tif"
    opts = segment_spec(raster=str(raster), output=str(tmp_path / "s.gpkg"), preset="sentinel2")
    summary = segment_raster(opts)
    assert summary.details["index"] == "mndwi" and summary.details["bands"] == [3, 12]
    water = pyogrio.read_dataframe(summary.output, layer="water")
    # 512 x 512 px of ~10 m: 26 km2; the hand label says 27% water, NDWI > 0 says 21%
    share = summary.water_area_km2 / 26.0
    assert 0.1 < share < 0.4
    assert water.crs.to_epsg() == 4326


# --------------------------------------------------------------------------- review fixes


@pytest.mark.parametrize(
    "kwargs,match",
    [
        # stride 4: 56 x 56 chips over one pixel; the mosaic counts at most 255 (was a ValueError mid-run)
        (dict(overlap=220), "overlap 220.*255"),
        (dict(out_crs="EPSG:999999"), "EPSG:999999"),  # was a pyproj CRSError after all the work
    ],
)
def test_bad_options_refused_before_any_chip(tmp_path, kwargs, match) -> None:
    scene = make_scene(tmp_path / "s.tif", width=600, height=500)
    seg = Recording(nir=4)
    opts = segment_spec(raster=str(scene.path), output=str(tmp_path / "o.gpkg"), **kwargs)
    with pytest.raises(InputError, match=match):
        segment_raster(opts, segmenter=fixed(seg))
    assert seg.seen == []


def test_simplify_in_degrees_of_a_geographic_raster_is_guarded(tmp_path) -> None:
    """--simplify 10 meant as metres is 10 degrees on EPSG:4326: every lake became a triangle."""
    scene = make_scene(tmp_path / "s.tif", crs="EPSG:4326", width=300, height=250)
    opts = dict(raster=str(scene.path), output=str(tmp_path / "o.gpkg"), nir=4)
    with pytest.raises(InputError, match="degrees"):
        segment_raster(segment_spec(**opts, simplify=10))
    summary = segment_raster(segment_spec(**opts, simplify=0.0002))  # two pixels: fine
    assert summary.polygons >= 3


def test_unwritable_output_folder_refused_before_any_chip(tmp_path) -> None:
    """A file where the output folder should be: a clear error up front, not a raw OSError."""
    scene = make_scene(tmp_path / "s.tif", width=300, height=250)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    seg = Recording(nir=4)
    opts = segment_spec(raster=str(scene.path), output=str(blocker / "o.gpkg"))
    with pytest.raises(InputError, match="cannot write to"):
        segment_raster(opts, segmenter=fixed(seg))
    assert seg.seen == []
