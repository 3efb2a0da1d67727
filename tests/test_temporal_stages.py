"""change and occurrence stage by stage, on in-memory maps and arrays (no file read or written).

The end-to-end tests (test_change.py, test_occurrence.py) go through GeoPackages; these call
each stage with shapely boxes and numpy masks, so a failure names the stage at fault.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
from shapely.geometry import box

from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.serial import flatten, from_data, unflatten
from paligemma_qgis.core.temporal.change_layers import class_layers, compare, observed_layer, summary_table
from paligemma_qgis.core.temporal.occurrence import classify, count_block, observations
from paligemma_qgis.core.temporal.options import ChangeOptions, OccurrenceOptions
from paligemma_qgis.core.temporal.water_maps import Scene, WaterMap

UTM = pyproj.CRS.from_epsg(32633)


def _map(name: str, water: list, observed, date: str | None = None) -> WaterMap:
    from shapely.ops import unary_union

    return WaterMap(name, UTM, [Scene(name, date, unary_union(water), observed)])


def test_compare_classes_only_where_both_dates_looked():
    """Gained and lost only inside both footprints; water the other date did not see is unknown."""
    before = _map("b", [box(0, 0, 100, 100)], observed=box(0, 0, 300, 100))
    # After looked over x < 220 only: its lake grew east to x = 200, and it saw a lake at x = 400,
    # where before did not look (unknown, not gained).
    after = _map("a", [box(0, 0, 200, 100), box(400, 0, 430, 100)], observed=box(0, 0, 220, 100))
    pieces = compare(before, after)
    area = lambda parts: float(sum(p.area for p in parts))  # noqa: E731
    assert area(pieces.persistent) == pytest.approx(100 * 100)
    assert area(pieces.gained) == pytest.approx(100 * 100)  # x 100..200, looked at on both dates
    assert area(pieces.lost) == 0
    assert area(pieces.unknown_after) == pytest.approx(30 * 100)
    assert area(pieces.unknown_before) == 0
    assert pieces.observed.area == pytest.approx(220 * 100)


def test_compare_with_an_area_of_interest_and_complete_maps():
    """Two maps without footprints (references) are known everywhere; an AOI cuts every class."""
    before = _map("b", [box(0, 0, 100, 100)], observed=None)
    after = _map("a", [box(50, 0, 150, 100)], observed=None)
    pieces = compare(before, after, aoi=box(0, 0, 120, 100))
    assert float(sum(p.area for p in pieces.gained)) == pytest.approx(20 * 100)
    assert float(sum(p.area for p in pieces.lost)) == pytest.approx(50 * 100)
    assert pieces.observed.area == pytest.approx(120 * 100)


def test_class_layers_drop_slivers_and_summarise():
    before = _map("b", [box(0, 0, 100, 100)], observed=box(0, 0, 300, 100))
    after = _map("a", [box(0, 0, 100, 100.5), box(200, 0, 260, 100)], observed=box(0, 0, 300, 100))
    pieces = compare(before, after)
    dates = {"before_date": "2020-01-01", "after_date": None}
    layers = class_layers(pieces, UTM, dates, min_area_m2=100.0)  # the 0.5 m strip is a sliver
    assert len(layers["gained"]) == 1 and layers["gained"]["area_m2"].iloc[0] == pytest.approx(
        6000, rel=0.01
    )  # ground m2, not UTM m2
    assert list(layers) == ["gained", "lost", "persistent", "unknown"]
    assert "water_on" in layers["unknown"].columns
    observed = observed_layer(pieces.observed, UTM, dates)
    table = summary_table(layers, observed, dates)
    assert list(table["class"]) == ["gained", "lost", "persistent", "unknown", "observed"]
    assert list(table["polygons"]) == [1, 0, 1, 0, 1]
    assert table["area_m2"].iloc[-1] == pytest.approx(300 * 100, rel=0.01)


def test_observations_merge_scenes_of_one_day_and_filter_dates():
    tile = box(0, 0, 10, 10)
    maps = [
        WaterMap("m", UTM, [Scene("a", "2020-05-01T10:00:00Z", box(0, 0, 1, 1), tile)]),
        WaterMap("n", UTM, [Scene("b", "2020-05-01", box(5, 5, 6, 6), box(5, 0, 15, 10))]),
        WaterMap("o", UTM, [Scene("c", "2021-01-01", box(0, 0, 2, 2), tile)]),
    ]
    obs = observations(maps)
    assert [(o.scene, o.date) for o in obs] == [("a,b", "2020-05-01"), ("c", "2021-01-01")]
    assert obs[0].observed.area == pytest.approx(150)
    assert [o.date for o in observations(maps, start="2021")] == ["2021-01-01"]
    assert observations(maps, end="2019") == []


def test_count_block_and_classes_from_masks():
    """Three observations of a 1 x 4 block: occurrence, counts, and the class of each pixel."""
    seen = [np.array([[1, 1, 1, 0]], bool)] * 3
    wet = [np.array([[1, 1, 0, 0]], bool), np.array([[1, 0, 0, 0]], bool), np.array([[1, 0, 0, 1]], bool)]
    occ, count, water = count_block(zip(seen, wet, strict=True), (1, 4), min_observations=1)
    assert count.tolist() == [[3, 3, 3, 0]]
    assert water.tolist() == [[3, 1, 0, 0]]  # water where not observed does not count
    assert occ.tolist()[0][:3] == pytest.approx([100.0, 100 / 3, 0.0]) and occ[0, 3] == -1.0
    assert classify(water, count, permanent=90, rare=40, min_obs=1).tolist() == [[3, 1, 0, 0]]


def test_options_check_themselves_with_codes():
    with pytest.raises(InputError) as e:
        ChangeOptions(after="a.gpkg", output="c.gpkg")
    assert (e.value.code, e.value.field) == ("change_needs_before", "before")
    with pytest.raises(InputError) as e:
        ChangeOptions(after="a.gpkg", before="b.gpkg", output="c.tif")
    assert (e.value.code, e.value.field) == ("output_not_gpkg", "output")
    with pytest.raises(InputError) as e:
        ChangeOptions(after="a.gpkg", before="b.gpkg", output="c.gpkg", min_area_m2=-1)
    assert (e.value.code, e.value.field) == ("option_range", "min_area_m2")
    with pytest.raises(InputError) as e:
        OccurrenceOptions(inputs=["r.gpkg"], output="o.tif", start="last May")
    assert (e.value.code, e.value.field) == ("water_map_date", "start")
    with pytest.raises(InputError) as e:
        OccurrenceOptions(inputs=[], output="o.tif")
    assert e.value.code == "occurrence_inputs_missing"
    assert OccurrenceOptions(inputs="one.gpkg", output="o.tif").inputs == ("one.gpkg",)


def test_worker_jobs_and_the_run_table_use_one_codec():
    """The plugin's change job (segment options nested, as plugin/options.py builds it) round-trips."""
    job = {
        "before": "b.tif",
        "after": "a.gpkg",
        "output": "c.gpkg",
        "aoi": None,
        "min_area_m2": 50,
        "segment": {"engine": "water-index", "nir": 4},
        "overwrite": True,
    }
    options = from_data(ChangeOptions, job)
    assert options.min_area_m2 == 50.0 and options.segment == {"engine": "water-index", "nir": 4}
    flat = flatten(options)
    assert flat["segment"] == {"engine": "water-index", "nir": 4} and list(flat)[:3] == [
        "after",
        "output",
        "before",
    ]
    assert unflatten(ChangeOptions, flat) == options
    with pytest.raises(InputError) as e:
        from_data(ChangeOptions, {**job, "colour": "blue"})
    assert e.value.code == "option_unknown"
    with pytest.raises(InputError) as e:
        from_data(ChangeOptions, {**job, "segment": "engine=paligemma"})
    assert (e.value.code, e.value.field) == ("option_type", "segment")
    occurrence = from_data(OccurrenceOptions, {"inputs": "runs", "output": "o.tif", "permanent": 80})
    assert occurrence.inputs == ("runs",) and occurrence.permanent == 80.0
