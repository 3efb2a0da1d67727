"""``segment --stac-api``: a STAC API on 127.0.0.1 (tests/stac_api.py), searched with pystac-client.

The API holds clouded Sentinel-2 L2A items (tests/cloudy_scenes.py) on four dates, one
outside the window and one cloudier than asked; assets are served over HTTP and read with
/vsicurl/. A run maps exactly the items of the window, cloud-masked, and a run killed half
way continues with the items the first search found, whatever the API publishes meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
from cloudy_scenes import s2_item
from stac_api import serve_api
from test_region import _wait_for_journal

from paligemma_qgis.cli import main
from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.run.driver import segment_raster
from paligemma_qgis.core.specs import segment_spec

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
WINDOW = "2021-06-01/2021-06-30"
BBOX = "15.0,45.1,15.1,45.2"


@pytest.fixture()
def api(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    with serve_api({}, files) as served:
        base = f"{served.url}/files"
        dates = [("before", "2021-05-20", 0), ("before", "2021-06-01", 1), ("after", "2021-06-11", 2)]
        items = [s2_item(files, base, kind, when, seed=seed) for kind, when, seed in dates]
        cloudy = s2_item(files, base, "after", "2021-06-21", seed=3)
        cloudy["properties"]["eo:cloud_cover"] = 80.0
        served.items["sentinel-2-l2a"] = [*items, cloudy]
        served.items["landsat-c2-l2"] = []
        served.publish()
        yield served


def _args(api, out: Path, *extra: str) -> list[str]:
    return [
        "segment",
        "--stac-api",
        api.url,
        "--collection",
        "sentinel-2-l2a",
        "--bbox",
        BBOX,
        "--datetime",
        WINDOW,
        "--max-cloud",
        "50",
        *extra,
        str(out),
    ]


def test_search_maps_exactly_the_items_of_the_window_cloud_masked(api, tmp_path, capsys) -> None:
    out = tmp_path / "o.gpkg"
    assert main(_args(api, out, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    scenes = pyogrio.read_dataframe(out, layer="scenes")
    assert list(scenes["scene"]) == ["S2B_33TWL_20210601_0_L2A", "S2B_33TWL_20210611_0_L2A"]
    assert list(scenes["path"]) == [
        f"{api.url}/collections/sentinel-2-l2a/items/{s}" for s in scenes["scene"]
    ]
    assert scenes["cloud_pct"].iloc[0] == 0 and scenes["cloud_pct"].iloc[1] == pytest.approx(4.93, abs=0.15)
    assert summary["scenes"] == 2 and not sorted(p.name for p in tmp_path.iterdir() if "items" in p.name)

    # A year, the limit, and no item at all: said in one line.
    capsys.readouterr()
    assert main(_args(api, tmp_path / "one.gpkg", "--limit", "1")) == 0
    assert list(pyogrio.read_dataframe(tmp_path / "one.gpkg", layer="scenes")["scene"]) == [
        "S2B_33TWL_20210601_0_L2A"
    ]
    with pytest.raises(InputError, match="no item of sentinel-2-l2a matches the search"):
        segment_raster(
            segment_spec(
                stac_api=api.url,
                collection="sentinel-2-l2a",
                bbox=[15, 45.1, 15.1, 45.2],
                datetime="2019",
                output=str(tmp_path / "none.gpkg"),
            )  # fmt: skip
        )


def test_search_area_from_an_aoi_file_and_errors_in_one_line(api, tmp_path, capsys) -> None:
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
            "type": "Polygon", "coordinates": [[[15.01, 45.12], [15.03, 45.12], [15.03, 45.14], [15.01, 45.12]]]}}]})
    )  # fmt: skip
    out = tmp_path / "o.gpkg"
    args = [a for a in _args(api, out) if a not in ("--bbox", BBOX)]
    assert main([*args[:-1], "--aoi", str(aoi), str(out)]) == 0
    scenes = pyogrio.read_dataframe(out, layer="scenes")
    assert len(scenes) == 2 and scenes["observed_area_m2"].max() < 3e6  # only the AOI is mapped
    for bad, says in (
        (["--bbox", "15,45.2,15.1,45.1"], "--bbox needs west,south,east,north"),
        (["--datetime", "June"], "--datetime needs a date or a range"),
        (["--collection", "nothing-here"], "no item of nothing-here matches"),
    ):
        capsys.readouterr()
        args = _args(api, tmp_path / "bad.gpkg")
        for flag, value in zip(bad[::2], bad[1::2], strict=True):
            args[args.index(flag) + 1] = value
        assert main(args) == 1
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar: one line
        assert last.startswith("error: ") and says in last and "Traceback" not in last, last
    assert main(["segment", "--collection", "x", str(tmp_path / "x.gpkg")]) == 1
    assert "give --stac-api too" in capsys.readouterr().err


def test_a_killed_search_run_continues_with_the_items_first_found(api, tmp_path) -> None:
    reference = tmp_path / "ref.gpkg"
    ref = subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *_args(api, reference)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    searches = api.searches()
    out = tmp_path / "o.gpkg"
    args = _args(api, out, "--overlap", "200", "--min-valid", "0.0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "paligemma_qgis", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _wait_for_journal(Path(f"{out}.journal"), "SELECT count(*) FROM scenes", 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Path(f"{out}.items.json").exists() and not out.exists()
    assert api.searches() > searches
    searches = api.searches()
    # Meanwhile the catalogue publishes another item of the window: the run goes on without it.
    api.items["sentinel-2-l2a"].append(s2_item(api.folder, f"{api.url}/files", "after", "2021-06-16", seed=4))
    api.publish()
    again = subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *args, "--json"], capture_output=True, text=True, env=ENV
    )
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["details"]["resumed"] is True and summary["details"]["scenes_from_journal"] >= 1
    assert api.searches() == searches  # no new search
    scenes = pyogrio.read_dataframe(out, layer="scenes")
    assert list(scenes["scene"]) == list(pyogrio.read_dataframe(reference, layer="scenes")["scene"])
    water, ref_water = (pyogrio.read_dataframe(p, layer="water") for p in (out, reference))
    assert water.union_all().symmetric_difference(ref_water.union_all()).area < 1.0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("o.")) == ["o.gpkg"]


def test_processing_region_algorithm_with_a_stac_search_source(provider, api, tmp_path, monkeypatch) -> None:
    """Map water in many rasters: STAC_API, collection, an extent (the map canvas's in the dialog), dates."""
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    out = tmp_path / "region.gpkg"
    params = {
        "STAC_API": api.url,
        "STAC_COLLECTION": "sentinel-2-l2a",
        "STAC_EXTENT": "15.0,15.1,45.1,45.2 [EPSG:4326]",
        "STAC_START": "2021-06-01",
        "STAC_END": "2021-06-30",
        "STAC_MAX_CLOUD": 50,
        "ENGINE": 1,
        "OUTPUT": str(out),
    }
    result = processing.run("paligemma:segment_water_region", params)
    assert result["SCENES"] == 2 and result["FAILED"] == 0
    scenes = pyogrio.read_dataframe(out, layer="scenes")
    assert list(scenes["scene"]) == ["S2B_33TWL_20210601_0_L2A", "S2B_33TWL_20210611_0_L2A"]
    assert scenes["cloud_pct"].iloc[1] == pytest.approx(4.93, abs=0.15)
    with pytest.raises(QgsProcessingException, match="either the rasters to map"):
        processing.run("paligemma:segment_water_region", {**params, "FOLDER": str(tmp_path)})
    with pytest.raises(QgsProcessingException, match="no item of sentinel-2-l2a matches"):
        processing.run(
            "paligemma:segment_water_region",
            {
                **params,
                "STAC_START": "2019-01-01",
                "STAC_END": "2019-12-31",
                "OUTPUT": str(tmp_path / "x.gpkg"),
            },
        )


def test_the_kept_items_are_believed_only_when_sealed_here_and_of_the_same_search(tmp_path, caplog) -> None:
    from paligemma_qgis.core.run import found_items

    spec = segment_spec(
        stac_api="http://127.0.0.1:9", collection="c", bbox=[15, 45.1, 15.1, 45.2], datetime="2021",
        output=str(tmp_path / "o.gpkg"),
    )  # fmt: skip
    key = found_items._search_key(spec)
    path = found_items.items_path(spec.output.path)
    found_items._write(path, key, [{"id": "a"}])
    assert found_items._read(path, key) == [{"id": "a"}]
    assert path.stat().st_mode & 0o777 == 0o600
    other = segment_spec({**spec.flat(), "datetime": "2020"})
    assert found_items._read(path, found_items._search_key(other)) is None  # another search: searched anew
    signed = segment_spec({**spec.flat(), "sign": "planetary-computer"})
    assert found_items._search_key(signed) == key  # signing finds the same items
    doc = json.loads(path.read_text())
    doc["items"][0]["id"] = "planted"
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    assert found_items._read(path, key) is None
    assert "not used" in caplog.text and "searching again" in caplog.text
    found_items.remove_found(spec.output.path)
    assert not path.exists()
