"""Mosaic: majority votes, nodata, disk backing, mask GeoTIFF, ground areas in any CRS."""

from __future__ import annotations

import gc
import math
import os

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from geodesy import GEOD, GRIDS, UTM, rectangle_truth
from rasterio.crs import CRS
from rasterio.windows import Window

from paligemma_qgis.core.errors import OutputExistsError
from paligemma_qgis.core.geometry.mosaic import NODATA, Mosaic
from paligemma_qgis.core.progress import CallbackProgress, Cancelled


def _lonlat(transform: Affine, epsg: int, cols: np.ndarray, rows: np.ndarray):
    x, y = transform * (cols, rows)
    return pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)


def circle_mask(transform: Affine, epsg: int, shape: tuple[int, int], radius_m: float) -> np.ndarray:
    """Pixels whose centre lies within radius_m (geodesic) of the grid's centre pixel."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    lon, lat = _lonlat(transform, epsg, cols + 0.5, rows + 0.5)
    lon0, lat0 = _lonlat(transform, epsg, w / 2, h / 2)
    _, _, dist = GEOD.inv(np.full(lon.size, lon0), np.full(lat.size, lat0), lon.ravel(), lat.ravel())
    return (dist < radius_m).reshape(shape)


def full(shape, value=True):
    return np.full(shape, value, dtype=bool)


def test_majority_vote_and_ties():
    with Mosaic(6, 1, UTM, CRS.from_epsg(32633)) as m:
        win = Window(0, 0, 6, 1)
        # pixel:            0  1  2  3  4  5
        m.add(win, np.array([[1, 1, 1, 0, 0, 1]], bool), full((1, 6)))
        m.add(win, np.array([[1, 1, 0, 0, 1, 0]], bool), full((1, 6)))
        m.add(win, np.array([[1, 0, 0, 0, 0, 0]], bool), np.array([[1, 1, 1, 1, 1, 0]], bool))
        votes, cov = m.read_counts(win)
        assert votes.tolist() == [[3, 2, 1, 0, 1, 1]]
        assert cov.tolist() == [[3, 3, 3, 3, 3, 2]]
        # 3/3 water, 2/3 water, 1/3 land, 0/3 land, 1/3 land, 1/2 tie -> land
        assert m.read_mask(win).tolist() == [[1, 1, 0, 0, 0, 0]]


def test_tie_is_land_and_two_of_two_is_water():
    with Mosaic(2, 2, UTM, 32633) as m:
        m.add(Window(0, 0, 2, 2), full((2, 2)), full((2, 2)))
        m.add(Window(0, 0, 2, 1), np.array([[0, 1]], bool), full((1, 2)))
        assert m.read_mask(Window(0, 0, 2, 2)).tolist() == [[0, 1], [1, 1]]


def test_overlapping_chips_at_offsets():
    """Chips at different offsets: counts land on the right pixels."""
    with Mosaic(5, 4, UTM, 32633) as m:
        m.add(Window(0, 0, 3, 3), full((3, 3)), full((3, 3)))
        m.add(Window(2, 1, 3, 3), full((3, 3), False), full((3, 3)))
        _, cov = m.read_counts(Window(0, 0, 5, 4))
        assert cov.tolist() == [[1, 1, 1, 0, 0], [1, 1, 2, 1, 1], [1, 1, 2, 1, 1], [0, 0, 1, 1, 1]]
        mask = m.read_mask(Window(0, 0, 5, 4))
        assert mask.tolist() == [
            [1, 1, 1, 255, 255],
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [255, 255, 0, 0, 0],
        ]


def test_nodata_is_never_water():
    with Mosaic(4, 1, UTM, 32633) as m:
        win = Window(0, 0, 4, 1)
        water = full((1, 4))
        # invalid pixels say water: they must count neither as votes nor as coverage
        m.add(win, water, np.array([[1, 0, 0, 1]], bool))
        m.add(win, water, np.array([[1, 0, 0, 0]], bool))
        m.add(Window(2, 0, 1, 1), np.array([[False]]), np.array([[True]]))
        votes, cov = m.read_counts(win)
        assert votes.tolist() == [[2, 0, 0, 1]]
        assert m.read_mask(win).tolist() == [[1, NODATA, 0, 1]]
        s = m.stats()
        assert s["water_pixels"] == 2 and s["valid_pixels"] == 3 and s["nodata_pixels"] == 1


def test_uncovered_mosaic_is_all_nodata():
    with Mosaic(7, 3, UTM, 32633) as m:
        blocks = list(m.iter_blocks(4))
        assert all((arr == NODATA).all() for _, arr in blocks)
        assert m.stats()["water_area_m2"] == 0.0


def test_add_rejects_bad_input():
    with Mosaic(10, 10, UTM, 32633) as m:
        with pytest.raises(ValueError, match="do not match"):
            m.add(Window(0, 0, 4, 4), full((3, 4)), full((4, 4)))
        with pytest.raises(ValueError, match="outside"):
            m.add(Window(8, 8, 4, 4), full((4, 4)), full((4, 4)))
        with pytest.raises(ValueError, match="whole pixels"):
            m.add(Window(0.5, 0, 4, 4), full((4, 4)), full((4, 4)))


def test_coverage_overflow_raises_instead_of_wrapping():
    with Mosaic(1, 1, UTM, 32633) as m:
        for _ in range(255):
            m.add(Window(0, 0, 1, 1), full((1, 1)), full((1, 1)))
        with pytest.raises(ValueError, match="255"):
            m.add(Window(0, 0, 1, 1), full((1, 1)), full((1, 1)))
        assert m.read_counts(Window(0, 0, 1, 1))[1].item() == 255


def test_iter_blocks_tiles_the_raster_and_matches_read_mask():
    rng = np.random.default_rng(0)
    h, w = 37, 53
    water = rng.random((h, w)) < 0.5
    valid = rng.random((h, w)) < 0.9
    with Mosaic(w, h, UTM, 32633) as m:
        m.add(Window(0, 0, w, h), water, valid)
        seen = np.zeros((h, w), int)
        for win, arr in m.iter_blocks(16):
            assert arr.dtype == np.uint8 and arr.shape == (win.height, win.width)
            assert arr.shape[0] <= 16 and arr.shape[1] <= 16
            sl = win.toslices()
            seen[sl] += 1
            expected = np.where(valid[sl], water[sl], NODATA)
            np.testing.assert_array_equal(arr, expected)
        assert (seen == 1).all()


def test_disk_backed_no_full_size_array_and_cleanup(tmp_path):
    w, h = 1000, 700
    m = Mosaic(w, h, UTM, 32633, workdir=tmp_path)
    folder = m.workdir
    assert folder.parent == tmp_path
    files = sorted(folder.glob("*.u8"))
    assert len(files) == 2 and all(f.stat().st_size == w * h for f in files)
    for r in range(0, h - 224, 200):
        for c in range(0, w - 224, 200):
            m.add(Window(c, r, 224, 224), full((224, 224)), full((224, 224)))
    # nothing of raster size lives in the object: no ndarray/memmap larger than one chip
    for value in vars(m).values():
        assert not (isinstance(value, np.ndarray) and value.size >= 224 * 224)
    live_maps = [o for o in gc.get_objects() if isinstance(o, np.memmap)]
    assert live_maps == []
    m.close()
    assert not folder.exists()
    assert tmp_path.exists()  # the user's workdir itself is kept
    m.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        m.add(Window(0, 0, 1, 1), full((1, 1)), full((1, 1)))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_resident_memory_stays_flat_while_adding(tmp_path):
    """128 MB of counts on disk; the process keeps only the page budget resident."""
    size, chip = 8000, 224
    m = Mosaic(size, size, UTM, 32633, workdir=tmp_path)
    m.RESIDENT_BUDGET = 8 << 20
    water = np.ones((chip, chip), bool)
    before = _rss_mb()
    grew = 0.0
    for r in range(0, size - chip + 1, chip):
        for c in range(0, size - chip + 1, chip):
            m.add(Window(c, r, chip, chip), water, water)
        grew = max(grew, _rss_mb() - before)
    with m:
        assert m.read_counts(Window(size - chip - 1, 0, 1, 1))[1].item() == 1  # data survived trimming
        assert grew < 40, f"RSS grew by {grew:.0f} MB"


def test_temp_files_removed_on_exception(tmp_path):
    with pytest.raises(RuntimeError), Mosaic(50, 50, UTM, 32633, workdir=tmp_path) as m:
        folder = m.workdir
        m.add(Window(0, 0, 10, 10), full((10, 10)), full((10, 10)))
        raise RuntimeError("boom")
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []


def test_temp_files_removed_when_garbage_collected(tmp_path):
    m = Mosaic(20, 20, UTM, 32633, workdir=tmp_path)
    folder = m.workdir
    del m
    gc.collect()
    assert not folder.exists()


def test_write_mask_tif_profile_and_values(tmp_path):
    h, w = 600, 700
    rng = np.random.default_rng(1)
    water = rng.random((h, w)) < 0.3
    valid = np.ones((h, w), bool)
    valid[:, :50] = False
    out = tmp_path / "mask.tif"
    with Mosaic(w, h, UTM, CRS.from_epsg(32633)) as m:
        m.add(Window(0, 0, w, h), water, valid)
        assert m.write_mask_tif(out, block=256) == out
        with rasterio.open(out) as ds:
            assert ds.dtypes == ("uint8",) and ds.count == 1
            assert ds.nodata == 255
            assert ds.profile["tiled"] is True
            assert ds.block_shapes[0][0] in (256, 512)
            assert ds.compression.name.lower() == "deflate"
            assert ds.crs.to_epsg() == 32633
            assert ds.transform == UTM
            data = ds.read(1)
        np.testing.assert_array_equal(data, np.where(valid, water, 255))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]

        with pytest.raises(OutputExistsError, match="mask.tif"):
            m.write_mask_tif(out)
        m.add(Window(0, 0, w, h), full((h, w)), full((h, w)))
        m.add(Window(0, 0, w, h), full((h, w)), full((h, w)))
        m.write_mask_tif(out, overwrite=True)
        with rasterio.open(out) as ds:
            assert (ds.read(1) == 1).all()


def test_write_mask_tif_failure_keeps_old_file(tmp_path):
    out = tmp_path / "mask.tif"
    out.write_bytes(b"old")
    calls = {"n": 0}

    def cancel_after_first_block() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with Mosaic(600, 600, UTM, 32633) as m:
        m.add(Window(0, 0, 600, 600), full((600, 600)), full((600, 600)))
        with pytest.raises(Cancelled):
            m.write_mask_tif(
                out,
                overwrite=True,
                block=512,
                progress=CallbackProgress(is_cancelled=cancel_after_first_block),
            )
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


@pytest.mark.parametrize("grid", GRIDS)
def test_stats_area_of_a_circle_matches_rectangle_truth(grid):
    transform, epsg = GRIDS[grid]
    shape = (400, 400)
    radius = 1000.0
    water = circle_mask(transform, epsg, shape, radius)
    assert 20_000 < water.sum() < 130_000  # the circle fits and is well sampled
    with Mosaic(shape[1], shape[0], transform, CRS.from_epsg(epsg)) as m:
        m.add(Window(0, 0, shape[1], shape[0]), water, full(shape))
        s = m.stats(block=128)  # several blocks: per-block sums must add up
    assert s["water_pixels"] == water.sum()
    assert s["water_area_m2"] == pytest.approx(math.pi * radius**2, rel=0.01)


@pytest.mark.parametrize("grid", GRIDS)
def test_stats_area_of_a_rectangle_matches_geodesic_area(grid):
    transform, epsg = GRIDS[grid]
    water = np.zeros((400, 400), bool)
    water[100:300, 60:340] = True
    truth, _ = rectangle_truth(transform, epsg, 100, 60, 300, 340)
    with Mosaic(400, 400, transform, epsg) as m:
        m.add(Window(0, 0, 400, 400), water, full((400, 400)))
        s = m.stats(block=96)
    # the method is exact up to 16-px chords; 1% is the contract, 0.1% catches subtle bugs
    assert s["water_area_m2"] == pytest.approx(truth, rel=1e-3)
    assert s["valid_area_m2"] > s["water_area_m2"]


def test_stats_without_crs_gives_nan_areas():
    with Mosaic(3, 3, Affine.identity(), None) as m:
        m.add(Window(0, 0, 3, 3), full((3, 3)), full((3, 3)))
        s = m.stats()
    assert s["water_pixels"] == 9 and math.isnan(s["water_area_m2"])


def test_stats_whole_globe_in_geographic_crs_is_the_ellipsoid_area():
    """Exact per-row areas: 1-degree pixels over the globe add up to the WGS84 surface."""
    with Mosaic(360, 180, Affine(1, 0, -180, 0, -1, 90), CRS.from_epsg(4326)) as m:
        m.add(Window(0, 0, 360, 180), full((180, 360), False), full((180, 360)))
        m.add(Window(0, 0, 360, 90), full((90, 360)), full((90, 360)))
        m.add(Window(0, 0, 360, 90), full((90, 360)), full((90, 360)))
        s = m.stats(block=64)
    assert s["valid_area_m2"] == pytest.approx(510_065_621.7e6, rel=1e-6)
    assert s["water_area_m2"] == pytest.approx(s["valid_area_m2"] / 2, rel=1e-9)  # northern hemisphere


def test_crs_is_normalised_and_missing_workdir_is_a_clear_error(tmp_path):
    from paligemma_qgis.core.errors import PaliGemmaQgisError

    with Mosaic(2, 2, UTM, pyproj.CRS.from_epsg(32633)) as m:
        assert isinstance(m.crs, CRS) and m.crs.to_epsg() == 32633
    with pytest.raises(PaliGemmaQgisError, match="nope"):
        Mosaic(2, 2, UTM, 32633, workdir=tmp_path / "nope")
