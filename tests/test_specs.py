"""The run's specs and their one codec: every front end's flat options, JSON, fingerprints."""

from __future__ import annotations

import dataclasses
import json

import pytest

from paligemma_qgis.core import rules, serial
from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.specs import ModelSpec, SegmentSpec, segment_spec


def _spec(**kw):
    return segment_spec(raster="a.tif", output="b.gpkg", **kw)


def test_flat_and_nested_json_round_trip() -> None:
    spec = _spec(bands="3,2,1", classes=["water", "river"], aoi=[1, 2, 3, 4], engine="paligemma", overlap=16)
    assert spec.read.bands == (3, 2, 1) and spec.grid.aoi == (1.0, 2.0, 3.0, 4.0)
    assert serial.from_data(SegmentSpec, json.loads(json.dumps(serial.to_data(spec)))) == spec
    assert segment_spec(json.loads(json.dumps(spec.flat()))) == spec


@pytest.mark.parametrize(
    ("flat", "code", "field"),
    [
        ({"treshold": 0.2}, "option_unknown", "treshold"),
        ({"vote": "most"}, "option_choice", "vote"),
        ({"overlap": -1}, "option_range", "overlap"),
        ({"overlap": "wide"}, "option_type", "overlap"),
        ({"min_valid_fraction": 1.5}, "option_range", "min_valid_fraction"),
        ({"bands": "3,2"}, "bands_count", "bands"),
        ({"nir": True}, "option_type", "nir"),
        ({"output": "b.tif"}, "output_not_gpkg", "output"),
        ({"raster": []}, "input_missing", "raster"),
        ({"compile": True}, "compile_needs_static", "compile"),
        ({"batch_size": 0}, "option_range", "batch_size"),
        ({"stretch": [98, 2]}, "stretch_range", "stretch"),
    ],
)
def test_bad_values_are_refused_with_a_code_and_the_field(flat, code, field) -> None:
    with pytest.raises(InputError) as caught:
        segment_spec({"raster": "a.tif", "output": "b.gpkg", **flat})
    assert (caught.value.code, caught.value.field) == (code, field)
    assert "--" not in str(caught.value)  # no front end's words in core


def test_defaults_come_from_the_rules() -> None:
    spec = _spec()
    assert spec.engine.name == rules.DEFAULT_ENGINE == "water-index"
    assert spec.overlap == rules.default_overlap("water-index") == 0
    assert _spec(engine="paligemma").overlap == rules.MODEL_OVERLAP
    assert spec.resolved().grid.overlap == 0 and _spec(overlap=8).resolved().grid.overlap == 8
    assert spec.grid.min_valid_fraction == rules.DEFAULT_MIN_VALID_FRACTION
    assert spec.engine.paligemma.classes == rules.DEFAULT_CLASSES


def test_fingerprint_ignores_what_does_not_change_the_answer() -> None:
    base = serial.fingerprint(_spec().resolved(), {"scenes": [["a", "a.tif"]]})
    for resumable in ({"batch_size": 4}, {"executor": "ray"}, {"out_crs": "EPSG:4326"}, {"dissolve": True}):
        assert serial.fingerprint(_spec(**resumable).resolved(), {"scenes": [["a", "a.tif"]]})[0] == base[0]
    for changing in ({"nir": 4}, {"threshold": 0.1}, {"overlap": 8}, {"vote": "any"}, {"min_area_m2": 5.0}):
        other = serial.fingerprint(_spec(**changing).resolved(), {"scenes": [["a", "a.tif"]]})
        assert other[0] != base[0], changing
        name = next(iter(changing))
        assert other[1][name] != base[1][name]  # the journal can name what changed
    assert serial.fingerprint(_spec().resolved(), {"scenes": [["b", "b.tif"]]})[0] != base[0]


def test_every_leaf_has_one_flat_name() -> None:
    names = serial.leaves(SegmentSpec)
    assert len(names) == len(set(names))
    assert {"raster", "output", "engine", "nir", "overlap", "model", "executor"} <= set(names)
    assert names["engine"] == ("engine", "name") and names["output"] == ("output", "path")


def test_specs_are_frozen_values() -> None:
    spec = _spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.read.nir = 4  # type: ignore[misc]
    assert hash(spec) == hash(_spec())
    assert ModelSpec(classes=("water",)) == ModelSpec()
