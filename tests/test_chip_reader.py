"""The fast paths of the chip loop: several reading threads, the 16-bit stretch table, mosaic paging."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from synthetic_rasters import make_scene

import paligemma_qgis.core.inputs.chip_reader as chip_reader
import paligemma_qgis.core.run.chips as chip_loop
from paligemma_qgis.core.geometry.mosaic import Mosaic
from paligemma_qgis.core.inputs.chip_reader import block_cache_bytes, chip_groups
from paligemma_qgis.core.inputs.grid import ChipGrid, chip_windows
from paligemma_qgis.core.inputs.raster import open_raster
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.specs import segment_spec


def test_chip_groups_cut_tiled_files_into_column_bands_at_tile_edges() -> None:
    grid = ChipGrid(2000, 700, 224, 32)
    groups = [list(g) for g in chip_groups(grid, 2000, 700, (256, 256), 2)]
    assert len(groups) == 2
    assert sorted(c.id for g in groups for c in g) == [c.id for c in grid]  # each chip once
    cut = 1024  # 1000 rounded to the 256-px tile grid
    for g, inside in zip(groups, (lambda x: x < cut, lambda x: x >= cut), strict=True):
        assert all(inside(c.col_off + c.window.width / 2) for c in g)
        assert [c.id for c in g] == sorted(c.id for c in g)  # order kept within a group


def test_chip_groups_cut_full_width_strips_into_row_bands() -> None:
    grid = ChipGrid(1000, 3000, 224, 32)
    groups = [list(g) for g in chip_groups(grid, 1000, 3000, (16, 1000), 2)]
    assert len(groups) == 2
    top = max(c.row_off for c in groups[0])
    assert all(c.row_off > top - 224 for c in groups[1])  # bands of rows, not columns
    assert [list(g) for g in chip_groups(grid, 1000, 3000, (16, 1000), 1)] == [list(grid)]


def test_clone_reads_the_same_chips_with_the_same_stretch(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", dtype="uint16")
    with open_raster(scene.path, nir=4) as src:
        src.read_sample([2, 4])
        other = src.clone()
        try:
            assert other.stretch == src.stretch
            for window in (Window(0, 0, 224, 224), Window(300, 200, 224, 224)):
                for a, b in zip(src.read_chip(window, [2, 4]), other.read_chip(window, [2, 4]), strict=True):
                    np.testing.assert_array_equal(a, b)
        finally:
            other.close()


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_16_bit_stretch_table_matches_the_formula(tmp_path, dtype: str) -> None:
    """The lookup table (indexed by the raw 16 bits) gives what the float formula gives."""
    path = tmp_path / "s.tif"
    rng = np.random.default_rng(1)
    lo = -3000 if dtype == "int16" else 0
    data = rng.integers(lo, 20000, size=(3, 64, 64)).astype(dtype)
    profile = dict(driver="GTiff", width=64, height=64, count=3, dtype=dtype, crs="EPSG:32633")
    with rasterio.open(path, "w", transform=Affine(1, 0, 0, 0, -1, 64), **profile) as dst:
        dst.write(data)
    with open_raster(path) as src:
        _, rgb, valid = src.read_chip(Window(0, 0, 64, 64))
        assert valid.all()
        for i, (a, b) in enumerate(src.stretch):
            expected = np.clip((data[i].astype(np.float64) - a) / (b - a) * 255.0 + 0.5, 0, 255).astype(
                np.uint8
            )
            np.testing.assert_array_equal(rgb[..., i], expected)


def test_two_reading_threads_give_the_same_output_as_one(tmp_path, monkeypatch) -> None:
    scene = make_scene(tmp_path / "s.tif", width=900, height=700, dtype="uint16", collar=True)
    layers = {}
    for workers in (1, 2):
        monkeypatch.setattr(chip_loop, "reader_threads", lambda w=workers: w)
        out = tmp_path / f"out{workers}.gpkg"
        summary = segment_raster(segment_spec(raster=str(scene.path), output=str(out), nir=4, batch_size=3))
        assert summary.chips + summary.skipped == len(chip_windows(900, 700, 224, 32))
        layers[workers] = (
            pyogrio.read_dataframe(out, layer="water"),
            pyogrio.read_dataframe(out, layer="chips"),
        )
    (w1, c1), (w2, c2) = layers[1], layers[2]
    assert len(w1) == len(w2) > 0
    assert all(a.equals_exact(b, 0) for a, b in zip(w1.geometry, w2.geometry, strict=True))
    np.testing.assert_array_equal(w1.area_m2, w2.area_m2)
    assert list(c1.chip_id) == list(c2.chip_id) == sorted(c1.chip_id)
    assert list(c1.status) == list(c2.status)


def test_block_cache_grows_for_wide_rasters_only(tmp_path) -> None:
    class Src:
        block_shape = (512, 512)
        height = 50000
        count = 4
        dtype = "uint16"

    src = Src()
    src.width = 20000
    assert block_cache_bytes(src, 224) == chip_reader.GDAL_CACHE_MB << 20
    src.width = 60000  # a 512-row tile row of 4 uint16 bands is 246 MB: three must fit
    assert block_cache_bytes(src, 224) == 3 * 60000 * 512 * 4 * 2
    src.width = 500000
    assert block_cache_bytes(src, 224) == chip_reader.GDAL_CACHE_MAX_MB << 20


def test_mosaic_pages_are_dropped_by_the_bounding_box_of_adds(tmp_path) -> None:
    """Chips along a row share pages: the budget counts their box, not each chip again."""
    width = 20000
    ones = np.ones((224, 224), bool)
    drops = 0
    with Mosaic(width, 600, Affine(10, 0, 0, 0, -10, 0), "EPSG:32633", workdir=tmp_path) as m:
        for r in (0, 192, 376):
            for c in [*range(0, width - 224, 192), width - 224]:
                m.add(Window(c, r, 224, 224), ones, ones)
                drops += m._span is None  # the pages were just dropped
                assert m._resident_bound() <= Mosaic.RESIDENT_BUDGET
            if r == 0:
                assert drops == 0  # one chip row is 224 x 20000 px x 2 files = 9 MB: kept
        assert drops <= 2  # three chip rows (600 x 20000 x 2 = 24 MB + fault-around)
        _, cov = m.read_counts(Window(0, 0, width, 600))
        assert cov[:192, :100].min() == 1 and cov[200:224, :100].min() == 2 and cov.min() >= 1


def test_aoi_clip_on_reading_threads_never_lets_a_georeference_warning_out(tmp_path) -> None:
    """rasterio hides a NotGeoreferencedWarning of its in-memory rasters with catch_warnings(),
    which is not thread-safe: reading threads clipping chips to an AOI at once let it escape
    (one CLI run in four printed ``warning: NotGeoreferencedWarning``)."""
    import sys
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from shapely.geometry import Point

    scene = make_scene(tmp_path / "s.tif", width=1024, height=1024)
    centre = scene.transform * (512, 512)
    aoi = Point(centre).buffer(4000, quad_segs=64)  # a circle: its rim crosses ~150 chips of 32 px
    grid = ChipGrid(1024, 1024, 32, 0, aoi=aoi, transform=scene.transform)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows every run
    try:
        with warnings.catch_warnings(record=True) as seen, open_raster(scene.path) as src:
            warnings.simplefilter("always")
            for _ in range(3):
                with chip_reader.ChipReader(src, grid, [1], 32, aoi, depth=8, workers=4) as reader:
                    clipped = sum(not item.valid.all() for item in reader)
                assert clipped > 50
    finally:
        sys.setswitchinterval(switch)
    assert not [w for w in seen if issubclass(w.category, NotGeoreferencedWarning)]
