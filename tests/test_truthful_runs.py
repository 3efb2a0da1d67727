"""A run tells the truth about itself (issue 20, item 9): what it did, what it kept, what failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from synthetic_rasters import make_scene

from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.progress import CallbackProgress, Cancelled
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.run.preflight import size_text
from paligemma_qgis.core.specs import segment_spec


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("two")
    return [
        make_scene(folder / f"t{i}_2021060{i + 1}.tif", width=300, height=260, seed=i).path for i in (0, 1)
    ]


def _run_table(path: Path) -> dict[str, str]:
    run = pyogrio.read_dataframe(path, layer="run", read_geometry=False)
    return dict(zip(run["key"], run["value"], strict=True))


def test_a_signal_after_the_output_is_in_place_changes_nothing(two, tmp_path) -> None:
    """Cancel asked once the GeoPackage is there: the run has succeeded and says so."""
    out = tmp_path / "o.gpkg"
    progress = CallbackProgress(is_cancelled=out.exists)
    summary = segment_raster(segment_spec(raster=str(two[0]), output=str(out), nir=4), progress)
    assert out.exists() and summary.polygons > 0


def test_a_run_resumed_entirely_from_its_journal_says_so_and_writes_the_same_facts(two, tmp_path) -> None:
    out, fresh = tmp_path / "o.gpkg", tmp_path / "fresh.gpkg"
    spec = segment_spec(raster=[str(p) for p in two], output=str(out), nir=4)
    stop = CallbackProgress(on_report=lambda d, t, m: _stop_at(m, "writing GeoPackage"))
    with pytest.raises(Cancelled):
        segment_raster(spec, stop)
    assert not out.exists() and Path(f"{out}.journal").exists()
    summary = segment_raster(spec)  # every scene comes from the journal
    segment_raster(segment_spec(raster=[str(p) for p in two], output=str(fresh), nir=4))
    resumed, whole = _run_table(out), _run_table(fresh)
    for key in ("engine", "chip_size", "batch_size", "device"):
        assert resumed[key] == whole[key], key
    assert resumed["chip_size"] == "224" and resumed["resumed"] == "true"
    assert summary.details["chips_redone"] == 0 and summary.chips_per_s == 0.0
    assert f"{summary.chips} from the interrupted run's journal" in summary.one_line()


def _stop_at(message: str, stage: str) -> None:
    if message.endswith(stage):
        raise Cancelled("cancelled by the user")


@pytest.mark.slow
def test_revectorize_keeps_the_scenes_that_failed_and_exits_3(two, tmp_path) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_bytes(two[0].read_bytes()[:3000])  # truncated: the header, no pixels
    run, again = tmp_path / "run.gpkg", tmp_path / "again.gpkg"
    proc = _cli("segment", str(two[0]), str(broken), str(run), "--nir", "4")
    assert proc.returncode == 3, proc.stderr
    proc = _cli("revectorize", str(run), str(again), "--min-area", "100")
    assert proc.returncode == 3, proc.stderr
    assert "warning: scene broken failed in the run" in proc.stderr
    before = pyogrio.read_dataframe(run, layer="scenes", read_geometry=False)
    after = pyogrio.read_dataframe(again, layer="scenes", read_geometry=False)
    assert list(after["scene"]) == list(before["scene"])
    failed = after.set_index("scene").loc["broken"]
    assert (
        failed["status"] == "failed" and failed["error"] == before.set_index("scene").loc["broken"]["error"]
    )


def test_sizes_are_never_zero_point_zero(tmp_path) -> None:
    assert [size_text(n) for n in (3_400_000_000, 310_000_000, 2_000_000, 12_000, 0)] == [
        "3.40 GB",
        "310 MB",
        "2 MB",
        "12 kB",
        "0 kB",
    ]


def test_an_all_nodata_raster_is_not_a_band_problem(tmp_path) -> None:
    """No band names, no preset and no valid pixel: the raster is empty, which is what to fix first."""
    scene = make_scene(tmp_path / "s.tif", width=300, height=260)
    empty = tmp_path / "empty.tif"
    with rasterio.open(scene.path) as src:
        profile = src.profile
    with rasterio.open(empty, "w", **profile) as dst:
        dst.write(np.zeros((profile["count"], 260, 300), profile["dtype"]))
    with pytest.raises(InputError) as caught:
        segment_raster(segment_spec(raster=str(empty), output=str(tmp_path / "o.gpkg")))
    assert caught.value.code == "no_valid_pixels" and "no valid pixels" in str(caught.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *args], capture_output=True, text=True, check=False
    )


def test_the_summary_json_says_how_many_chips_were_redone(two, tmp_path) -> None:
    proc = _cli("segment", str(two[0]), str(tmp_path / "o.gpkg"), "--nir", "4", "--json")
    summary = json.loads(proc.stdout)
    assert summary["details"]["chips_redone"] == summary["chips"] > 0


def test_an_unsure_water_map_is_a_one_line_warning(tmp_path) -> None:
    """The water index doubts a scene (bright fields pass for water): the CLI says so, once a scene."""
    from shapely.geometry import box
    from synthetic_rasters import SHALLOW_WATER

    fields = [box(0, 0, 300, 150), box(320, 180, 600, 260), box(0, 260, 250, 380)]
    scene = make_scene(tmp_path / "s.tif", fields_px=fields, water_spectrum=SHALLOW_WATER)
    proc = _cli("segment", str(scene.path), str(tmp_path / "o.gpkg"), "--nir", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["details"]["unsure_scenes"]
    lines = [line for line in proc.stderr.splitlines() if "the water map is unsure" in line]
    assert len(lines) == 1 and "--preset" in lines[0] and lines[0].startswith("warning: scene s:")


def test_revectorize_refuses_a_stac_search_run_in_one_line(two, tmp_path) -> None:
    """A search run's items are not kept once it ends, so its scenes cannot be read again: a coded
    refusal, not "no input given" from deep inside."""
    import sqlite3

    from paligemma_qgis.core.run.revectorize import revectorize

    out = tmp_path / "o.gpkg"
    segment_raster(segment_spec(raster=str(two[0]), output=str(out), nir=4))
    search = {"raster": [], "stac_api": "https://earth-search.example/v1", "collection": "sentinel-2-l2a",
              "datetime": "2021-06-01/2021-06-30", "bbox": [15.0, 45.1, 15.1, 45.2]}  # fmt: skip
    with sqlite3.connect(out) as db:
        for name, value in search.items():
            db.execute("DELETE FROM run WHERE key = ?", (f"option.{name}",))
            db.execute("INSERT INTO run (key, value) VALUES (?, ?)", (f"option.{name}", json.dumps(value)))
    with pytest.raises(InputError) as caught:
        revectorize(out, tmp_path / "again.gpkg", min_area_m2=100)
    assert caught.value.code == "revectorize_search_run"
    assert "earth-search.example" in str(caught.value) and not (tmp_path / "again.gpkg").exists()
