"""Vectorising while chips come (core.geometry.trace): same answer whatever the scheduling, equal to one whole trace.

The scene is made to be seam-heavy: lakes with islands, a diagonal river, pixels that
touch only at a corner, and nodata, all cut by chip edges (224 px), by the background
tracer's stripes and blocks (shrunk here to 48 x 80 px) and by storage tiles. The
reference is computed without the pipeline: NDWI > t over the whole raster in NumPy, and
its polygons traced in one piece by ``rasterio.features.shapes``.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes
from rasterio.windows import Window

from paligemma_qgis.core.errors import InputError, PaliGemmaQgisError
from paligemma_qgis.core.geometry import trace_background
from paligemma_qgis.core.geometry.mosaic import Mosaic
from paligemma_qgis.core.geometry.trace import ChipRows, trace_blocks
from paligemma_qgis.core.geometry.trace_background import ProcessTracer, ThreadTracer, stripe_tracer
from paligemma_qgis.core.inputs.grid import ChipGrid
from paligemma_qgis.core.inputs.raster import RasterSource
from paligemma_qgis.core.model.water_index import normalized_difference
from paligemma_qgis.core.progress import CallbackProgress, Cancelled
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.specs import segment_spec

THRESHOLD = 0.2
TRANSFORM = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 5_500_000.0)


def seam_heavy_scene(path, width: int = 700, height: int = 530) -> tuple[np.ndarray, np.ndarray]:
    """Write the scene; return (water, valid) as the water index must find them."""
    rows, cols = np.mgrid[0:height, 0:width]
    water = ((rows % 150 - 75) ** 2 + (cols % 170 - 85) ** 2) < 60**2  # lakes across every seam
    water &= ((rows % 150 - 75) ** 2 + (cols % 170 - 85) ** 2) > 12**2  # ... each with an island
    water |= np.abs(rows - 0.7 * cols - 20) < 4  # a diagonal river through everything
    checker = (rows + cols) % 2 == 0
    # land pixels touching only at corners, across a stripe seam (row 288) and a block seam (col 320)
    water |= checker & (rows >= 282) & (rows < 294) & (cols >= 314) & (cols < 326)
    valid = np.ones_like(water)
    valid[300:380, 500:640] = False  # nodata inside
    valid[:, :3] = False  # and along an edge
    rng = np.random.default_rng(0)
    land, wet = np.array([900, 1100, 700, 2600]), np.array([300, 600, 800, 150])
    data = np.where(water[None], wet[:, None, None], land[:, None, None]) + rng.integers(
        0, 40, (4, height, width)
    )
    data = np.where(valid[None], data, 0).astype("uint16")
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=0,
        tiled=True,
        blockxsize=128,
        blockysize=128,
        compress="deflate",
        photometric="minisblack",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    ndwi = normalized_difference(data[1].astype(np.float32), data[3].astype(np.float32))
    with np.errstate(invalid="ignore"):
        return (ndwi > THRESHOLD) & valid, valid


def whole_trace(mask: np.ndarray) -> list[bytes]:
    """Polygons of a mask traced in one piece, in map coordinates, canonical."""
    polys = [
        shapely.geometry.shape(g)
        for g, _ in shapes(mask.view(np.uint8), mask=mask, connectivity=4, transform=TRANSFORM)
    ]
    return sorted(shapely.to_wkb(shapely.normalize(np.array(polys, dtype=object))))


def canonical(geoms) -> list[bytes]:
    return sorted(shapely.to_wkb(shapely.normalize(np.asarray(geoms, dtype=object))))


@pytest.fixture(params=["thread", "process"])
def small_stripes(monkeypatch, request):
    """Stripes and blocks far smaller than chips: every kind of seam, many times over; the
    background tracer on a thread, or in a child process (forced for this small mosaic)."""
    monkeypatch.setattr(trace_background, "STRIPE_ROWS", 48)
    monkeypatch.setattr(trace_background, "BLOCK", 80)
    monkeypatch.setattr(trace_background, "PROCESS_PIXELS", 0 if request.param == "process" else 10**12)
    return request.param


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [None, 32, 100])
def test_seam_heavy_scene_equals_one_whole_trace(tmp_path, small_stripes, overlap) -> None:
    """Mask, polygons and observed footprint equal the whole-raster reference, whatever the overlap."""
    water, valid = seam_heavy_scene(tmp_path / "s.tif")
    out, tif = tmp_path / "o.gpkg", tmp_path / "m.tif"
    # min_valid_fraction 0: a chip is skipped only when it holds no valid pixel, so every
    # valid pixel is decided whatever the grid (the default 5% skips edge chips by design)
    summary = segment_raster(
        segment_spec(
            raster=str(tmp_path / "s.tif"),
            output=str(out),
            green=2,
            nir=4,
            threshold=THRESHOLD,
            overlap=overlap,
            min_valid_fraction=0.0,
            mask_tif=str(tif),
        )
    )
    with rasterio.open(tif) as m:
        mask = m.read(1)
    assert ((mask == 1) == water).all() and ((mask != 255) == valid).all()
    got = pyogrio.read_dataframe(out, layer="water")
    expected = whole_trace(water)
    assert summary.polygons == len(got) == len(expected) > 30
    assert canonical(got.geometry.values) == expected
    observed = pyogrio.read_dataframe(out, layer="scenes").geometry.iloc[0]
    assert canonical(shapely.get_parts(observed)) == whole_trace(valid)
    run = pyogrio.read_dataframe(out, layer="run", read_geometry=False)
    recorded = dict(zip(run["key"], run["value"], strict=True))["option.overlap"]
    assert recorded == ("0" if overlap is None else str(overlap))  # the default is recorded as used


@pytest.mark.slow
@pytest.mark.parametrize("backend", [ThreadTracer, ProcessTracer])
def test_stripe_tracer_equals_a_trace_after_the_loop_in_any_chip_order(tmp_path, backend) -> None:
    """Chips arriving in random order (threads, batches) with the tracer racing them: same polygons."""
    water, valid = seam_heavy_scene(tmp_path / "s.tif")
    h, w = water.shape
    grid = ChipGrid(w, h, 64, 16)
    with Mosaic(w, h, TRANSFORM, "EPSG:32633") as reference:
        reference.add(Window(0, 0, w, h), water, valid)
        expected = trace_blocks(reference, 2048)

    class Watched(Mosaic):
        """Fails a read of rows a chip still to come will write (the tracer must never do that).

        A thread reads through it; a child process reads the files, so there the equality
        of the result is what shows it never read too early."""

        pending: set = set()

        def read_mask(self, window):
            r0, r1 = int(window.row_off), int(window.row_off + window.height)
            late = [c for c in list(self.pending) if c.row_off < r1 and c.row_off + 64 > r0]
            assert not late, f"rows {r0}..{r1} read before chip {late[0].id} was added"
            return super().read_mask(window)

    for seed in range(4 if backend is ThreadTracer else 2):
        rng = random.Random(seed)
        chips = list(grid)
        if seed:  # roughly row by row, as reader threads deliver them: rows become final early
            chips.sort(key=lambda c: c.row_off + rng.uniform(0, 150))
        else:
            rng.shuffle(chips)
        with (
            Watched(w, h, TRANSFORM, "EPSG:32633") as m,
            backend(m, grid, stripe=40, block=56) as tracer,
        ):
            m.pending = set(chips)
            for k, chip in enumerate(chips):
                r0, c0 = chip.row_off, chip.col_off
                sl = np.s_[r0 : r0 + 64, c0 : c0 + 64]
                m.add(chip.window, water[sl], valid[sl])
                m.pending.discard(chip)
                tracer.chip_done(chip)
                if k % 10 == 0:
                    time.sleep(0.002)  # let the tracer run mid-loop
            got = tracer.finish()
        assert canonical(got[0]) == canonical(expected[0])
        assert canonical(got[1]) == canonical(expected[1])


def test_chip_rows_never_call_a_row_final_too_early() -> None:
    """With an AOI (rows without chips) and chips in any order, ``final`` only covers finished rows."""
    aoi = shapely.Polygon([(10, 10), (600, 40), (300, 500), (20, 300)])
    transform = Affine.identity()
    grid = ChipGrid(700, 560, 64, 20, aoi=aoi.buffer(0), transform=transform)
    rows = ChipRows(grid)
    top = int(grid.extent.row_off)
    chips = list(grid)
    random.Random(1).shuffle(chips)
    pending = {c.id: c for c in chips}
    assert rows.final == 0
    for chip in chips:
        rows.done(chip)
        del pending[chip.id]
        first_pending = min((c.row_off for c in pending.values()), default=None)
        if first_pending is None:
            assert rows.final == int(grid.extent.height)
        else:
            assert rows.final <= first_pending - top  # no chip still to come writes above it


def test_an_error_in_the_tracer_is_raised_by_finish(tmp_path, monkeypatch) -> None:
    class Broken(Mosaic):
        def read_mask(self, window):
            raise OSError("disk gone")

    with Broken(100, 100, TRANSFORM, "EPSG:32633") as m, ThreadTracer(m, stripe=10) as tracer:
        tracer.rows_final(50)
        with pytest.raises(OSError, match="disk gone"):
            tracer.finish()
    with Mosaic(100, 100, TRANSFORM, "EPSG:32633") as m:
        spec = m.reader_spec()
        monkeypatch.setattr(m, "reader_spec", lambda: {**spec, "paths": [str(tmp_path / "gone.u8")] * 2})
        with ProcessTracer(m, stripe=10) as tracer:
            tracer.rows_final(50)
            with pytest.raises(PaliGemmaQgisError, match="vectorising failed: FileNotFoundError.*gone.u8"):
                tracer.finish()


@pytest.mark.parametrize("backend", [ThreadTracer, ProcessTracer])
def test_leaving_early_or_cancelling_stops_the_tracer(tmp_path, backend) -> None:
    with Mosaic(100, 100, TRANSFORM, "EPSG:32633") as m:
        with pytest.raises(RuntimeError), backend(m, stripe=10) as tracer:
            tracer.rows_final(30)
            raise RuntimeError("the chip loop failed")
        with backend(m, stripe=10) as tracer, pytest.raises(Cancelled):
            tracer.finish(CallbackProgress(is_cancelled=lambda: True))
    assert "vectoriser" not in {t.name for t in threading.enumerate()}
    assert not multiprocessing.active_children()


def test_big_mosaics_are_traced_in_a_child_process(tmp_path) -> None:
    with Mosaic(100, 100, TRANSFORM, "EPSG:32633") as m:
        assert isinstance(stripe_tracer(m), ThreadTracer)
        assert isinstance(stripe_tracer(m, process=True), ProcessTracer)
    assert trace_background.PROCESS_PIXELS <= 10000 * 10000  # a 10000 px scene gets its own GIL


# ----------------------------------------------------------------------------- what is read
def test_fixed_threshold_reads_no_scene_sample_and_a_scene_threshold_reads_one(tmp_path, monkeypatch) -> None:
    seam_heavy_scene(tmp_path / "s.tif")
    calls = []
    real = RasterSource.read_sample

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("rgb", True))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RasterSource, "read_sample", counting)
    opts = dict(raster=str(tmp_path / "s.tif"), green=2, nir=4)
    segment_raster(segment_spec(output=str(tmp_path / "a.gpkg"), threshold=THRESHOLD, **opts))
    assert calls == []
    summary = segment_raster(segment_spec(output=str(tmp_path / "b.gpkg"), **opts))
    assert calls == [False]  # the threshold's sample, without the RGB bands or a stretch
    assert summary.details["threshold_source"] == "auto"


def test_all_nodata_is_still_named_when_no_sample_is_read(tmp_path) -> None:
    path = tmp_path / "empty.tif"
    profile = dict(driver="GTiff", width=300, height=250, count=4, dtype="uint16", crs="EPSG:32633")
    with rasterio.open(path, "w", transform=TRANSFORM, nodata=0, **profile) as dst:
        dst.write(np.zeros((4, 250, 300), "uint16"))
    opts = segment_spec(raster=str(path), output=str(tmp_path / "o.gpkg"), nir=4, threshold=THRESHOLD)
    with pytest.raises(InputError, match="empty.tif: the raster has no valid pixels"):
        segment_raster(opts)
    assert not (tmp_path / "o.gpkg").exists()
