"""Water index segmenter: band resolution, NDWI/MNDWI, the scene threshold and its self-check, factory."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from paligemma_qgis.cli.wording import cli_message
from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.model.factory import make_segmenter
from paligemma_qgis.core.model.segmenter import ChipBatch, RasterBands
from paligemma_qgis.core.model.water_index import (
    OTSU_BOUNDS,
    WaterIndexSegmenter,
    normalized_difference,
    otsu_threshold,
)
from paligemma_qgis.core.specs import segment_spec

RGBN = RasterBands(count=4, descriptions=(None,) * 4, rgb=(1, 2, 3))


def _batch(green: np.ndarray, other: np.ndarray, valid: np.ndarray | None = None) -> ChipBatch:
    raw = np.stack([green, other]).astype(np.float32)[None]
    v = np.ones(green.shape, bool) if valid is None else valid
    raw[:, :, ~v] = np.nan
    return ChipBatch(raw=raw, rgb=np.zeros((1, *green.shape, 3), np.uint8), valid=v[None], ids=[0])


@pytest.mark.parametrize(
    "kwargs,bands,expected,index",
    [
        (dict(nir=4), RGBN, [2, 4], "ndwi"),  # green from the RGB rendering
        # MNDWI preferred; NIR read too, for the darkness check of the scene threshold
        (dict(green=2, nir=4, swir=5), RasterBands(5, (None,) * 5, (1, 2, 3)), [2, 5, 4], "mndwi"),
        (
            dict(green=2, nir=4, swir=5, threshold=0.1),
            RasterBands(5, (None,) * 5, (1, 2, 3)),
            [2, 5],
            "mndwi",
        ),
        (dict(green=2, nir=9, swir=5), RasterBands(5, (None,) * 5, (1, 2, 3)), [2, 5], "mndwi"),
        (
            dict(green=2, nir=4, swir=5, index="ndwi"),
            RasterBands(5, (None,) * 5, (1, 2, 3)),
            [2, 4, 5],
            "ndwi",
        ),
        (dict(nir=4), RasterBands(4, ("a", "b", "green", "d"), (1, 2, 3)), [3, 4], "ndwi"),  # described green
    ],
)
def test_bands_needed(kwargs, bands, expected, index) -> None:
    seg = WaterIndexSegmenter(**kwargs)
    assert seg.bands_needed(bands) == expected
    assert seg.index_name == index
    assert seg.chip_size == 224 and seg.name == "water-index"


def test_refuses_rgb_only() -> None:
    with pytest.raises(InputError, match="has no NIR or SWIR band for the water index") as caught:
        WaterIndexSegmenter().bands_needed(RasterBands(3, (None,) * 3, (1, 2, 3)))
    assert (caught.value.code, caught.value.field) == ("band_unknown", "nir")
    assert cli_message(caught.value).endswith(
        "set --nir to its band number, choose the sensor with --preset, or set --engine to paligemma"
    )
    with pytest.raises(InputError, match="no SWIR band for MNDWI") as caught:
        WaterIndexSegmenter(nir=4, index="mndwi").bands_needed(RGBN)
    assert (caught.value.code, caught.value.field) == ("band_unknown", "swir")
    with pytest.raises(InputError, match="nir band 9 does not exist") as caught:
        WaterIndexSegmenter(nir=9).bands_needed(RGBN)
    assert (caught.value.code, caught.value.field) == ("band_out_of_range", "nir")
    with pytest.raises(InputError, match="same band") as caught:
        WaterIndexSegmenter(green=4, nir=4).bands_needed(RGBN)
    assert (caught.value.code, caught.value.field) == ("same_band", "nir")


def test_normalized_difference_edge_cases() -> None:
    a = np.array([60, 0, np.nan, 10], np.float32)
    b = np.array([15, 0, 5, 30], np.float32)
    nd = normalized_difference(a, b)
    assert (
        nd[0] == pytest.approx(0.6) and np.isnan(nd[1]) and np.isnan(nd[2]) and nd[3] == pytest.approx(-0.5)
    )


@pytest.mark.parametrize("water_share", [0.05, 0.3, 0.6])
def test_otsu_separates_modes(water_share: float) -> None:
    rng = np.random.default_rng(0)
    n = 20000
    k = int(n * water_share)
    values = np.r_[rng.normal(0.5, 0.08, k), rng.normal(-0.3, 0.08, n - k)]
    t = otsu_threshold(values)
    assert -0.1 < t < 0.35
    assert otsu_threshold(np.array([np.nan])) == 0.0


def test_clean_modes_threshold_in_the_middle() -> None:
    values = np.r_[np.full(100, -0.24), np.full(50, 0.6)]
    assert 0.0 < otsu_threshold(values) < 0.4


def test_segment_and_prepare() -> None:
    green = np.full((8, 8), 110.0)
    nir = np.full((8, 8), 180.0)
    green[:4], nir[:4] = 60, 15  # water on top
    valid = np.ones((8, 8), bool)
    valid[:, :2] = False  # nodata on the left, never water
    seg = WaterIndexSegmenter(nir=4)
    seg.bands_needed(RGBN)
    seg.prepare(_batch(green, nir, valid))
    assert OTSU_BOUNDS[0] <= seg.threshold <= OTSU_BOUNDS[1]
    (res,) = seg.segment(_batch(green, nir, valid))
    expected = np.zeros((8, 8), bool)
    expected[:4, 2:] = True
    assert (res.water == expected).all() and res.status == "ok"
    assert seg.describe()["threshold_source"] == "auto"


def test_fixed_threshold_is_kept_and_empty_status() -> None:
    seg = WaterIndexSegmenter(nir=4, threshold=0.9)
    seg.bands_needed(RGBN)
    green, nir = np.full((4, 4), 60.0), np.full((4, 4), 15.0)
    seg.prepare(_batch(green, nir))
    assert seg.threshold == 0.9
    (res,) = seg.segment(_batch(green, nir))
    assert not res.water.any() and res.status == "empty"


def test_dry_scene_does_not_invent_water() -> None:
    """A scene without water: Otsu splits land in two, the bound keeps it from calling land water."""
    rng = np.random.default_rng(1)
    green = rng.normal(100, 5, (64, 64))
    nir = rng.normal(200, 30, (64, 64))
    seg = WaterIndexSegmenter(nir=4)
    seg.bands_needed(RGBN)
    seg.prepare(_batch(green, nir))
    (res,) = seg.segment(_batch(green, nir))
    assert res.water.mean() < 0.01


def test_factory_water_index() -> None:
    spec = segment_spec(raster="a.tif", output="o.gpkg", threshold=0.2, model="ignored", device="cpu")
    seg = make_segmenter(spec.engine, {"green": 2, "nir": 4})
    assert isinstance(seg, WaterIndexSegmenter) and seg.threshold == 0.2 and seg.nir == 4
    assert seg.info.pixelwise and not seg.info.needs_rgb and not seg.info.needs_sample  # a fixed threshold


def test_factory_paligemma_is_lazy(monkeypatch) -> None:
    calls = {}

    class FakeSegmenter:
        @classmethod
        def from_options(cls, **kw):
            calls.update(kw)
            return cls()

    module = types.ModuleType("paligemma_qgis.core.model.paligemma")
    module.PaliGemmaSegmenter = FakeSegmenter
    monkeypatch.setitem(sys.modules, "paligemma_qgis.core.model.paligemma", module)
    spec = segment_spec(
        raster="a.tif",
        output="o.gpkg",
        engine="paligemma",
        model="m",
        vae="v.npz",
        device="cpu",
        batch_size=4,
    )
    seg = make_segmenter(spec.engine, {"nir": 4})
    assert isinstance(seg, FakeSegmenter)
    assert calls == dict(
        model="m",
        vae="v.npz",
        allow_custom_vae=False,
        device="cpu",
        batch_size=4,
        classes=("water",),
        constrained=True,
        max_new_tokens=None,
        max_objects=None,
        dtype=None,
        cache="dynamic",
        compile=False,
    )


# ----------------------------------------------------------------------------- threshold methods
def test_unknown_threshold_method_is_an_input_error() -> None:
    with pytest.raises(InputError, match="threshold_method 'magic' is not one of auto, edge-otsu") as exc:
        WaterIndexSegmenter(nir=4, threshold_method="magic")  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.field) == ("option_choice", "threshold_method")
    spec = segment_spec(raster="a.tif", output="o.gpkg", threshold_method="multi-otsu")
    seg = make_segmenter(spec.engine, {"nir": 4})
    assert seg.threshold_method == "multi-otsu"
    with pytest.raises(InputError) as caught:
        segment_spec(raster="a.tif", output="o.gpkg", threshold_method="magic")
    assert (caught.value.code, caught.value.field) == ("option_choice", "threshold_method")


def test_prepare_on_several_chips_and_the_self_check() -> None:
    """Chips are laid side by side: a lake cut by the chip border makes no edge across chips."""
    green = np.full((2, 32, 32), 110.0)
    nir = np.full((2, 32, 32), 180.0)
    green[0, 8:24, 8:24], nir[0, 8:24, 8:24] = 60, 15  # a lake in the first chip
    green[1, :, 24:], nir[1, :, 24:] = 60, 15  # water along the second chip's right border
    raw = np.stack([green, nir], axis=1).astype(np.float32)
    batch = ChipBatch(
        raw=raw, rgb=np.zeros((2, 32, 32, 3), np.uint8), valid=np.ones((2, 32, 32), bool), ids=[0, 1]
    )
    seg = WaterIndexSegmenter(nir=4)
    seg.bands_needed(RGBN)
    seg.prepare(batch)
    d = seg.describe()
    assert -0.24 < seg.threshold < 0.6 and d["threshold_source"] == "auto"
    assert d["quality"] > 0.9 and d["unsure"] is False and d["unsure_reason"] is None
    assert d["bright_share"] == 0.0 and d["bands"] == [2, 4] and d["edge_pixels"] > 0
    assert [r.water.sum() for r in seg.segment(batch)] == [16 * 16, 32 * 8]


def test_fixed_threshold_has_no_self_check() -> None:
    seg = WaterIndexSegmenter(nir=4, swir=5, threshold=0.2)
    assert seg.bands_needed(RasterBands(5, (None,) * 5, (1, 2, 3))) == [2, 5] and not seg.needs_sample
    assert seg.describe() == {
        "index": "mndwi",
        "bands": [2, 5],
        "threshold": 0.2,
        "threshold_source": "fixed",
    }


@pytest.mark.parametrize("method", ["otsu", "auto", None])
def test_bright_fields_end_to_end(tmp_path, method: str | None) -> None:
    """A raster with harvested fields of bright soil and shallow water (NDWI only): plain Otsu
    maps the fields; the default maps the water, says why it is unsure, in ``run`` and ``scenes``."""
    import pyogrio
    import shapely
    from shapely.geometry import box
    from synthetic_rasters import SHALLOW_WATER, iou, make_scene

    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    fields = [box(0, 0, 300, 150), box(320, 180, 600, 260), box(0, 260, 250, 380)]
    scene = make_scene(tmp_path / "s.tif", fields_px=fields, water_spectrum=SHALLOW_WATER)
    chosen = {} if method is None else {"threshold_method": method}  # None: the spec's default
    opts = segment_spec(raster=str(scene.path), output=str(tmp_path / "o.gpkg"), nir=4, **chosen)
    summary = segment_raster(opts)
    water = pyogrio.read_dataframe(summary.output, layer="water")
    score = iou(shapely.union_all(water.geometry.values), shapely.union_all(scene.water))
    scenes = pyogrio.read_dataframe(summary.output, layer="scenes", read_geometry=False)
    run = pyogrio.read_dataframe(summary.output, layer="run", read_geometry=False)
    run = dict(zip(run["key"], run["value"], strict=True))
    assert run["engine.threshold_source"] == (method or "auto")
    assert scenes["threshold"].iloc[0] == pytest.approx(float(run["engine.threshold"]))
    if method == "otsu":
        assert score < 0.4  # the fields are water
        assert "bright in NIR" in scenes["unsure"].iloc[0]  # ... and the map says it is unsure
    else:
        assert score > 0.95
        assert float(run["engine.raised_from"]) < float(run["engine.threshold"])
        assert "threshold raised" in scenes["unsure"].iloc[0]
