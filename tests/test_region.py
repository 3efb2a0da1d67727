"""Region runs: many scenes in one resumable run, locally and on Ray, and revectorize.

Scenes are small synthetic rasters in three CRSs; PaliGemma runs are the tiny random model
(its texts are arbitrary but deterministic, which is all equality needs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from synthetic_rasters import iou, make_scene

from paligemma_qgis.core.errors import InputError, OutputExistsError
from paligemma_qgis.core.inputs.scenes import resolve_inputs
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.run.revectorize import revectorize
from paligemma_qgis.core.specs import segment_spec

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
CRSS = ["EPSG:32633", "EPSG:32633", "EPSG:4326", "EPSG:4326", "EPSG:3857"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    """Five small scenes in three CRSs, sizes and seeds all different, dated in their names."""
    folder = tmp_path_factory.mktemp("scenes")
    return [
        make_scene(
            folder / f"s{i}_2021070{i + 1}.tif", crs=crs, width=300 + 41 * i, height=250 + 17 * i, seed=i
        ).path
        for i, crs in enumerate(CRSS)
    ]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test segmenter factories
    yield ray
    ray.shutdown()


def _layer(path: Path, layer: str):
    return pyogrio.read_dataframe(path, layer=layer)


def _same_polygons(a, b) -> None:
    assert len(a) == len(b)
    assert all(x.equals_exact(y, 0) for x, y in zip(a.geometry, b.geometry, strict=True))
    np.testing.assert_array_equal(a["area_m2"].to_numpy(), b["area_m2"].to_numpy())


def _paligemma(tiny_paligemma, vae_npz, **kw) -> dict:
    return dict(
        engine="paligemma",
        model=str(tiny_paligemma),
        vae=str(vae_npz),
        allow_custom_vae=True,
        device="cpu",
        batch_size=4,
        max_objects=2,
        **kw,
    )


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *args], capture_output=True, text=True, env=ENV, **kw
    )


# ----------------------------------------------------------------------------- one run, many scenes
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_region_equals_separate_runs(scenes, tmp_path, executor, request) -> None:
    """Five scenes in three CRSs: the region's polygons are, scene by scene, those of five runs."""
    if executor == "ray":
        request.getfixturevalue("ray_local")
    region = tmp_path / "region.gpkg"
    summary = segment_raster(
        segment_spec(
            raster=[str(p) for p in scenes], output=str(region), nir=4, out_crs="EPSG:4326", executor=executor
        )
    )
    assert summary.scenes == 5 and summary.failed == 0
    water, layer_scenes = _layer(region, "water"), _layer(region, "scenes")
    assert list(layer_scenes["scene"]) == [p.stem for p in scenes]
    assert list(layer_scenes["date"]) == [f"2021-07-0{i + 1}" for i in range(5)]
    assert (layer_scenes["status"] == "done").all()
    total = 0
    for i, path in enumerate(scenes):
        single = tmp_path / f"single{i}.gpkg"
        one = segment_raster(segment_spec(raster=str(path), output=str(single), nir=4, out_crs="EPSG:4326"))
        mine = water[water["scene"] == path.stem].reset_index(drop=True)
        _same_polygons(mine, _layer(single, "water"))
        assert (mine["date"] == f"2021-07-0{i + 1}").all()
        total += one.polygons
        # the observed footprint is the whole raster here (no nodata)
        observed = layer_scenes.geometry[i]
        assert observed.geom_type == "MultiPolygon" and layer_scenes["observed_area_m2"][i] > 0
        assert shapely.union_all(mine.geometry.values).difference(observed.buffer(1e-9)).area == 0
    assert len(water) == total == summary.polygons


def test_observed_footprint_leaves_out_nodata(tmp_path) -> None:
    scene = make_scene(tmp_path / "c.tif", collar=True, mask="nodata")
    out = tmp_path / "o.gpkg"
    segment_raster(segment_spec(raster=str(scene.path), output=str(out), nir=4))
    observed = _layer(out, "scenes").geometry[0]
    assert iou(observed, scene.footprint) > 0.99
    assert observed.area < 0.9 * scene.width * scene.height * scene.transform.a**2


def test_dissolve_merges_overlapping_scenes(scenes, tmp_path) -> None:
    out = tmp_path / "d.gpkg"
    same_place = [scenes[0], scenes[1]]  # both UTM scenes start at the same origin
    summary = segment_raster(
        segment_spec(raster=[str(p) for p in same_place], output=str(out), nir=4, dissolve=True)
    )
    water, merged = _layer(out, "water"), _layer(out, "water_dissolved")
    assert 0 < len(merged) < len(water)
    union = shapely.union_all(water.geometry.values)
    assert iou(shapely.union_all(merged.geometry.values), union) > 0.999
    assert merged["area_m2"].sum() < water["area_m2"].sum()
    assert summary.details["dissolved_polygons"] == len(merged)


def test_a_failing_scene_is_recorded_and_the_run_goes_on(scenes, tmp_path) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a raster")
    out = tmp_path / "o.gpkg"
    proc = _cli("segment", str(scenes[0]), str(broken), str(scenes[2]), str(out), "--nir", "4")
    assert proc.returncode == 3, proc.stderr[-2000:]  # written, but a scene failed
    assert "warning: scene broken failed" in proc.stderr and "Traceback" not in proc.stderr
    layer = _layer(out, "scenes")
    assert list(layer["status"]) == ["done", "failed", "done"]
    assert "cannot open as a raster" in layer["error"][1] and layer.geometry[1] is None
    assert set(_layer(out, "water")["scene"]) == {scenes[0].stem, scenes[2].stem}
    out.unlink()
    proc = _cli("segment", str(scenes[0]), str(broken), str(scenes[2]), str(out), "--nir", "4", "--fail-fast")
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {broken}")


def test_an_engine_that_cannot_load_is_the_run_s_error_not_each_scene_s(scenes, tmp_path) -> None:
    from paligemma_qgis.core.errors import WeightsError

    calls = []

    def factory(roles):
        calls.append(1)
        raise WeightsError("model folder /nowhere does not exist")

    with pytest.raises(WeightsError, match="/nowhere"):
        segment_raster(
            segment_spec(raster=[str(p) for p in scenes], output=str(tmp_path / "o.gpkg")),
            segmenter=factory,
        )
    assert len(calls) == 1  # not once per scene (a 3B model load each, on a thousand scenes)
    assert list(tmp_path.iterdir()) == []


def test_a_work_folder_too_small_for_the_mosaic_is_refused_before_any_chip(
    scenes, tmp_path, monkeypatch
) -> None:
    import collections
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    usage = collections.namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6) if Path(p) == work else real(p)
    )
    seen = []
    progress = type(
        "P", (), {"report": lambda self, d, t, m="": seen.append(m), "cancelled": lambda self: False}
    )()
    with pytest.raises(
        InputError, match=rf"{work}: the mosaic of .*s4_20210705.tif needs \d+ [kM]B of temporary space"
    ) as caught:
        segment_raster(
            segment_spec(
                raster=[str(p) for p in scenes], output=str(tmp_path / "o.gpkg"), nir=4, workdir=str(work)
            ),
            progress,
        )
    assert not any(m.endswith("segmenting chips") for m in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and list(work.iterdir()) == []
    from paligemma_qgis.cli.wording import cli_message

    assert cli_message(caught.value).endswith("or choose another work folder with --workdir")


def test_inputs_folders_lists_globs_and_stac_resolve_once_with_unique_ids(scenes, tmp_path) -> None:
    folder = scenes[0].parent
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"# my region\n{scenes[1]}\n\n{os.path.relpath(scenes[2], tmp_path)}\n")
    twin = tmp_path / "other"
    twin.mkdir()
    (twin / scenes[0].name).write_bytes(scenes[0].read_bytes())
    found = resolve_inputs([str(folder), str(listing), str(folder / "s3_*.tif"), str(twin / scenes[0].name)])
    assert [s.path for s in found[:5]] == [str(p) for p in scenes]  # the folder, sorted; no duplicates
    assert [s.id for s in found] == [p.stem for p in scenes] + [f"{scenes[0].stem}_2"]
    assert found[-1].date == "2021-07-01"
    for bad, message in (
        ([str(tmp_path / "missing.tif")], "input not found"),
        ([str(tmp_path / "nothing_*.tif")], "no file matches"),
        ([str(twin.parent / "empty")], "input not found"),
    ):
        with pytest.raises(InputError, match=message):
            resolve_inputs(bad)


def test_rasters_in_subfolders_are_said_not_skipped_in_silence(scenes, tmp_path, caplog) -> None:
    top = tmp_path / "region"
    (top / "2020" / "june").mkdir(parents=True)
    (top / "2021").mkdir()
    (top / "2020" / "june" / scenes[0].name).write_bytes(scenes[0].read_bytes())
    (top / "2021" / scenes[1].name).write_bytes(scenes[1].read_bytes())
    (top / "2021" / "notes.txt").write_text("not a raster")
    # Only subfolders hold rasters: an error that gives the glob that maps them.
    with pytest.raises(InputError) as caught:
        resolve_inputs([str(top)])
    assert caught.value.code == "folder_rasters_deeper" and caught.value.params["count"] == 2
    pattern = caught.value.params["pattern"]
    assert pattern == str(top / "**" / "*.tif")
    assert [s.id for s in resolve_inputs([pattern])] == [scenes[0].stem, scenes[1].stem]
    assert [s.id for s in resolve_inputs([str(top)], recursive=True)] == [scenes[0].stem, scenes[1].stem]
    # Rasters at the top too: those are mapped, the others said in a warning.
    (top / scenes[2].name).write_bytes(scenes[2].read_bytes())
    with caplog.at_level("WARNING", logger="paligemma_qgis.core.inputs.scenes"):
        assert [s.id for s in resolve_inputs([str(top)])] == [scenes[2].stem]
    assert "2 raster(s) in its subfolders are not mapped" in caplog.text and pattern in caplog.text
    deeper = [scenes[0].stem, scenes[1].stem]
    assert [s.id for s in resolve_inputs([str(top)], recursive=True)] == [*deeper, scenes[2].stem]


def test_recursive_is_the_command_line_s_flag_and_a_spec_field(scenes, tmp_path) -> None:
    from paligemma_qgis.cli.wording import cli_message

    top = tmp_path / "region"
    (top / "2021").mkdir(parents=True)
    (top / "2021" / scenes[1].name).write_bytes(scenes[1].read_bytes())
    out = tmp_path / "o.gpkg"
    with pytest.raises(InputError) as caught:
        resolve_inputs([str(top)])
    assert "add --recursive to map them all" in cli_message(caught.value)
    summary = segment_raster(segment_spec(raster=[str(top)], output=str(out), nir=4, recursive=True))
    assert summary.scenes == 1
    assert pyogrio.read_dataframe(out, layer="scenes")["scene"].tolist() == [scenes[1].stem]


def _stac_item(folder: Path, scene, item_id: str, date: str) -> dict:
    """Green and NIR at 10 m, SWIR at 20 m, each its own GeoTIFF, as a STAC catalogue publishes them."""
    import rasterio
    from rasterio.enums import Resampling

    assets = {}
    with rasterio.open(scene.path) as src:
        for key, band, factor in (("B03", 2, 1), ("B08", 4, 1), ("B11", 5, 2)):
            data = src.read(
                band, out_shape=(src.height // factor, src.width // factor), resampling=Resampling.average
            )
            profile = dict(
                driver="GTiff",
                width=data.shape[1],
                height=data.shape[0],
                count=1,
                dtype=data.dtype,
                crs=src.crs,
                transform=src.transform * src.transform.scale(factor),
                nodata=0,
            )
            path = folder / f"{item_id}_{key}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data, 1)
            common = {"B03": "green", "B08": "nir", "B11": "swir16"}[key]
            assets[key] = {
                "href": path.name,
                "type": "image/tiff",
                "eo:bands": [{"name": key, "common_name": common}],
            }
    assets["thumbnail"] = {"href": "thumb.png", "type": "image/png"}
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "properties": {"datetime": date},
        "geometry": None,
        "assets": assets,
    }


def test_stac_item_collection_of_local_files(tmp_path) -> None:
    folder = tmp_path / "stac"
    folder.mkdir()
    dry = make_scene(tmp_path / "dry.tif", swir=True, width=400, height=300, seed=1)
    wet = make_scene(tmp_path / "wet.tif", swir=True, width=400, height=300, seed=2)
    items = [
        _stac_item(folder, dry, "S2A_T33TWL_20210601", "2021-06-01T10:20:31Z"),
        _stac_item(folder, wet, "S2B_T33TWL_20210611", "2021-06-11T10:20:29.024Z"),
    ]
    catalogue = folder / "items.json"
    catalogue.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    out = tmp_path / "o.gpkg"
    summary = segment_raster(segment_spec(raster=str(catalogue), output=str(out)))
    layer = _layer(out, "scenes")
    assert list(layer["scene"]) == ["S2A_T33TWL_20210601", "S2B_T33TWL_20210611"]
    assert list(layer["date"]) == ["2021-06-01T10:20:31Z", "2021-06-11T10:20:29Z"]
    assert summary.details["index"] == "mndwi"  # the bands named themselves: no preset needed
    water = _layer(out, "water")
    for scene in (dry, wet):
        got = shapely.union_all(
            water[water["date"].str.startswith("2021-06-01" if scene is dry else "2021-06-11")].geometry
        )
        assert iou(got, shapely.union_all(scene.water)) > 0.9
    with pytest.raises(
        InputError, match=r"S2A_T33TWL_20210601: no asset holds the band red or blue"
    ) as caught:
        resolve_inputs([str(catalogue)], engine="paligemma")
    from paligemma_qgis.cli.wording import cli_message

    assert cli_message(caught.value).endswith("choose others with --stac-bands")
    with pytest.raises(InputError, match="no asset holds the band swir22"):
        resolve_inputs([str(catalogue)], stac_bands=["green", "swir22"])


# ----------------------------------------------------------------------------- resume
def test_changed_options_are_detected_and_restart_starts_over(scenes, tmp_path) -> None:
    out = tmp_path / "o.gpkg"
    from paligemma_qgis.core.run.driver import journal_key
    from paligemma_qgis.core.run.journal import Journal

    opts = segment_spec(raster=[str(p) for p in scenes[:2]], output=str(out), nir=4)
    with Journal.open(out, journal_key(opts, resolve_inputs(list(opts.raster)))):
        pass  # an interrupted run left its journal
    changed = segment_spec(raster=[str(p) for p in scenes[:2]], output=str(out), nir=4, overlap=16)
    with pytest.raises(
        InputError, match=r"other options left o.gpkg.journal \(changed: overlap 0 -> 16\)"
    ) as caught:
        segment_raster(changed)
    from paligemma_qgis.cli.wording import cli_message

    assert cli_message(caught.value).endswith("or use --restart to start over")
    changed = dataclasses.replace(changed, run=dataclasses.replace(changed.run, restart=True))
    assert segment_raster(changed).scenes == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg"]


def test_sigterm_after_a_scene_keeps_it_for_the_same_command(scenes, tmp_path) -> None:
    """A cancel leaves no output and no temp file; finished scenes stay in the journal."""
    out = tmp_path / "o.gpkg"
    args = ["segment", *map(str, scenes), str(out), "--nir", "4", "--overlap", "150"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "paligemma_qgis", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _wait_for_journal(Path(f"{out}.journal"), "SELECT count(*) FROM scenes", 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("cancelled: no output written;") and "run the same command again" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg.journal"]
    again = _cli(*args, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["details"]["scenes_from_journal"] >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg"]


def _wait_for_journal(
    path: Path, query: str, at_least: int, proc: subprocess.Popen, timeout: float = 120
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
        if path.exists():
            try:
                # closed at once: an open reader left behind keeps the writer's -wal/-shm files
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
                    n = db.execute(query).fetchone()[0]
                if n >= at_least:
                    return n
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    raise AssertionError("the journal never got there")


def test_kill_9_half_way_then_the_same_command_gives_the_same_output(scenes, tmp_path) -> None:
    """Water index, scene level: finished scenes are not redone, the output is the same."""
    copy = tmp_path / "again_20210706.tif"  # a sixth scene: the first again, another day
    copy.write_bytes(scenes[0].read_bytes())
    many = [*scenes, copy]
    reference = tmp_path / "ref.gpkg"
    ref = _cli("segment", *map(str, many), str(reference), "--nir", "4", "--overlap", "120")
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "out.gpkg"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paligemma_qgis",
            "segment",
            *map(str, many),
            str(out),
            "--nir",
            "4",
            "--overlap",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    done = _wait_for_journal(Path(f"{out}.journal"), "SELECT count(*) FROM scenes", 3, proc)
    proc.kill()
    proc.wait()
    assert not out.exists() and Path(f"{out}.lock").exists()  # a stale lock: nobody holds it
    again = _cli("segment", *map(str, many), str(out), "--nir", "4", "--overlap", "120", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["details"]["resumed"] is True
    assert summary["details"]["scenes_from_journal"] >= done >= 3
    _same_polygons(_layer(out, "water"), _layer(reference, "water"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out.gpkg"]


def test_kill_9_mid_scene_resumes_chips_from_the_journal(tmp_path, tiny_paligemma, vae_npz) -> None:
    """PaliGemma, chip level: answered chips are not sent to the model again; same output."""
    scene = make_scene(tmp_path / "big.tif", width=700, height=500, seed=5)  # 12 chips
    flags = [
        "--engine", "paligemma", "--model", str(tiny_paligemma), "--vae", str(vae_npz), "--allow-custom-vae",
        "--device", "cpu", "--batch-size", "2", "--max-objects", "2",
    ]  # fmt: skip
    reference = tmp_path / "ref.gpkg"
    ref = _cli("segment", str(scene.path), str(reference), *flags)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "out.gpkg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "paligemma_qgis", "segment", str(scene.path), str(out), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    answered = _wait_for_journal(Path(f"{out}.journal"), "SELECT count(*) FROM chips", 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _cli("segment", str(scene.path), str(out), *flags, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["details"]["chips_from_journal"] >= answered >= 4  # not asked again
    _same_polygons(_layer(out, "water"), _layer(reference, "water"))
    assert list(_layer(out, "chips")["text"]) == list(_layer(reference, "chips")["text"])


def test_a_resumed_run_does_not_read_answered_chips_again(
    tmp_path, tiny_paligemma, vae_npz, monkeypatch
) -> None:
    """The journal keeps each answered chip's validity: resuming reads only the others, same output."""
    import paligemma_qgis.core.inputs.chip_reader as chip_reader
    from paligemma_qgis.core.progress import Cancelled

    scene = make_scene(
        tmp_path / "collar.tif", width=700, height=500, collar=True, seed=3
    )  # partial validity
    opts = dict(raster=str(scene.path), **_paligemma(tiny_paligemma, vae_npz))
    reference = tmp_path / "ref.gpkg"
    full = segment_raster(segment_spec(output=str(reference), **opts))
    out = tmp_path / "out.gpkg"
    stop = type(
        "P",
        (),
        {
            "n": 0,
            "report": lambda self, d, t, m="": setattr(self, "n", d),
            "cancelled": lambda self: self.n >= 5,
        },
    )()
    with pytest.raises(Cancelled):
        segment_raster(segment_spec(output=str(out), **opts), stop)
    reads = []
    real = chip_reader.read_chip
    monkeypatch.setattr(
        chip_reader, "read_chip", lambda src, chip, *a, **k: reads.append(chip.id) or real(src, chip, *a, **k)
    )
    again = segment_raster(segment_spec(output=str(out), **opts))
    answered = again.details["chips_from_journal"]
    assert answered >= 4 and len(reads) == full.chips + full.skipped - answered
    _same_polygons(_layer(out, "water"), _layer(reference, "water"))
    assert list(_layer(out, "chips")["text"]) == list(_layer(reference, "chips")["text"])
    assert _layer(out, "scenes").geometry[0].equals(_layer(reference, "scenes").geometry[0])


def test_a_second_run_to_the_same_output_fails_at_once_naming_the_first(scenes, tmp_path) -> None:
    out = tmp_path / "o.gpkg"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paligemma_qgis",
            "segment",
            str(scenes[0]),
            str(out),
            "--nir",
            "4",
            "--overlap",
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        _wait_for_journal(Path(f"{out}.journal"), "SELECT count(*) FROM meta", 1, first)
        started = time.monotonic()
        with pytest.raises(
            OutputExistsError, match=rf"another run is writing this output \(process {first.pid}"
        ):
            segment_raster(segment_spec(raster=str(scenes[1]), output=str(out), nir=4))
        assert time.monotonic() - started < 1.0
    finally:
        first.kill()
        first.wait()


# ----------------------------------------------------------------------------- Ray
def test_ray_paligemma_equals_local_and_survives_a_killed_actor(
    scenes, tmp_path, tiny_paligemma, vae_npz, ray_local
) -> None:
    """Model actors take batches of every scene; an actor that dies mid-run is restarted, same output."""
    inputs = [str(p) for p in scenes[:3]]
    local = tmp_path / "local.gpkg"
    opts = _paligemma(tiny_paligemma, vae_npz)
    segment_raster(segment_spec(raster=inputs, output=str(local), **opts))
    marker = tmp_path / "died"
    factory = DiesOnce(str(tiny_paligemma), str(vae_npz), str(marker))
    on_ray = tmp_path / "ray.gpkg"
    summary = segment_raster(
        segment_spec(raster=inputs, output=str(on_ray), executor="ray", **opts), segmenter=factory
    )
    assert marker.exists(), "the actor never died: the test tested nothing"
    assert summary.scenes == 3
    _same_polygons(_layer(on_ray, "water"), _layer(local, "water"))
    assert list(_layer(on_ray, "chips")["text"]) == list(_layer(local, "chips")["text"])


class DiesOnce:
    """Builds the tiny PaliGemma; the segmenter kills its own process at its third batch, once."""

    def __init__(self, model: str, vae: str, marker: str):
        self.model, self.vae, self.marker = model, vae, marker

    def __call__(self, roles=None):
        from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

        seg = PaliGemmaSegmenter.from_options(
            model=self.model, vae=self.vae, allow_custom_vae=True, device="cpu", batch_size=4, max_objects=2
        )
        generate, calls, marker = seg.generate_texts, [0], Path(self.marker)

        def dying(batch):
            calls[0] += 1
            if calls[0] == 3 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # as an OOM killer or a lost node would: no clean-up
            return generate(batch)

        seg.generate_texts = dying
        return seg


def test_ray_missing_is_a_clear_message(scenes, tmp_path, monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray":
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError, match="needs Ray in the Python that runs the job") as caught:
        segment_raster(
            segment_spec(raster=str(scenes[0]), output=str(tmp_path / "o.gpkg"), nir=4, executor="ray")
        )
    from paligemma_qgis.cli.wording import cli_message

    assert cli_message(caught.value).endswith("or run without --executor ray")


# ----------------------------------------------------------------------------- revectorize
def test_revectorize_equals_a_fresh_run_with_the_new_options(scenes, tmp_path) -> None:
    run = tmp_path / "run.gpkg"
    segment_raster(segment_spec(raster=[str(p) for p in scenes[:3]], output=str(run), nir=4))
    new = tmp_path / "new.gpkg"
    changes = dict(min_area_m2=5000.0, out_crs="EPSG:3857", vote="any")
    revectorize(run, new, **changes)
    fresh = tmp_path / "fresh.gpkg"
    segment_raster(segment_spec(raster=[str(p) for p in scenes[:3]], output=str(fresh), nir=4, **changes))
    _same_polygons(_layer(new, "water"), _layer(fresh, "water"))
    assert _layer(new, "water").crs.to_epsg() == 3857
    assert (_layer(new, "water")["area_m2"] >= 5000).all()
    table = _layer(new, "run")
    assert dict(zip(table["key"], table["value"], strict=True))["revectorized_from"] == str(run)


def test_revectorize_after_the_aoi_file_is_gone(scenes, tmp_path) -> None:
    """QGIS hands the worker a temporary copy of an AOI layer: the run keeps the geometry itself."""
    import geopandas as gpd

    aoi = tmp_path / "aoi.gpkg"
    area = shapely.box(500_500, 4_997_000, 502_500, 4_999_500)  # part of the UTM scenes
    gpd.GeoDataFrame(geometry=[area], crs="EPSG:32633").to_file(aoi)
    run = tmp_path / "run.gpkg"
    inputs = [str(p) for p in scenes[:2]]
    segment_raster(segment_spec(raster=inputs, output=str(run), nir=4, aoi=str(aoi)))
    aoi.unlink()
    new = tmp_path / "new.gpkg"
    revectorize(run, new, min_area_m2=2000.0)
    water = _layer(new, "water")
    assert len(water) > 0 and shapely.union_all(water.geometry.values).difference(area).area < 1e-6
    fresh = tmp_path / "fresh.gpkg"
    segment_raster(
        segment_spec(
            raster=inputs, output=str(fresh), nir=4, aoi=area.wkt, aoi_crs="EPSG:32633", min_area_m2=2000.0
        )
    )
    _same_polygons(water, _layer(fresh, "water"))


def test_revectorize_paligemma_needs_no_model(scenes, tmp_path, tiny_paligemma, vae_npz) -> None:
    run = tmp_path / "run.gpkg"
    opts = _paligemma(tiny_paligemma, vae_npz)
    segment_raster(segment_spec(raster=[str(p) for p in scenes[:2]], output=str(run), **opts))
    (Path(tiny_paligemma) / "model.safetensors").rename(tmp_path / "away.safetensors")  # no model now
    try:
        new = tmp_path / "new.gpkg"
        proc = _cli("revectorize", str(run), str(new), "--vote", "any", "--min-area", "1000", "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["details"]["chips_from_journal"] > 0
    finally:
        (tmp_path / "away.safetensors").rename(Path(tiny_paligemma) / "model.safetensors")
    fresh = tmp_path / "fresh.gpkg"
    segment_raster(
        segment_spec(
            raster=[str(p) for p in scenes[:2]], output=str(fresh), vote="any", min_area_m2=1000, **opts
        )
    )
    _same_polygons(_layer(new, "water"), _layer(fresh, "water"))
