"""Processing ``water_change`` and ``water_occurrence`` in a real QGIS: the worker runs the core,
the results load styled, in one group per run."""

from __future__ import annotations

import json

import pytest
from qgis.core import (
    QgsProcessingException,
    QgsProject,
    QgsRasterLayer,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from shapely.geometry import box
from test_occurrence import H, T, W, _scenes
from water_series import SceneTruth, write_run

from paligemma_qgis.plugin.change_styles import FILLS

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


def _maps(tmp_path):
    lake0 = box(501_000, 4_996_000, 502_000, 4_997_000)
    lake1 = box(501_000, 4_996_000, 502_500, 4_997_000)
    pond = box(504_000, 4_998_000, 504_200, 4_998_200)
    frame = box(499_000, 4_994_000, 506_000, 4_999_000)
    before = write_run(
        tmp_path / "before.gpkg", "EPSG:32633", [SceneTruth("a", "2019-05-02", [lake0, pond], frame)]
    )
    after = write_run(tmp_path / "after.gpkg", "EPSG:32633", [SceneTruth("b", "2020-05-02", [lake1], frame)])
    return before, after


def _group_layers(project: QgsProject, name: str) -> list[tuple[str, bool]]:
    group = project.layerTreeRoot().findGroup(name)
    assert group is not None, [g.name() for g in project.layerTreeRoot().children()]
    return [(node.layer().name(), node.isVisible()) for node in group.findLayers()]


def _fill_rgb(layer: QgsVectorLayer) -> str:
    colour = layer.renderer().symbol().color()
    return f"{colour.red()},{colour.green()},{colour.blue()}"


def test_water_change_loads_styled_layers_in_a_group(provider, clean_project, tmp_path):
    import processing

    before, after = _maps(tmp_path)
    output = tmp_path / "change.gpkg"
    result = processing.runAndLoadResults(
        "paligemma:water_change",
        {"BEFORE": str(before), "AFTER": str(after), "OUTPUT": str(output)},
    )
    assert result["OUTPUT"] == str(output)
    assert result["GAINED_KM2"] == pytest.approx(0.5, rel=1e-3)  # 500 m x 1 km (UTM grid ~ ground)
    assert result["LOST_KM2"] == pytest.approx(0.04, rel=1e-3)
    assert result["PERSISTENT_KM2"] == pytest.approx(1.0, rel=1e-3)
    summary = json.loads(result["SUMMARY"])
    assert (summary["before_date"], summary["after_date"]) == ("2019-05-02", "2020-05-02")
    layers = _group_layers(clean_project, "Water change 2019-05-02 → 2020-05-02")
    assert layers == [
        ("gained", True),
        ("lost", True),
        ("persistent", True),
        ("unknown", True),
        ("observed on both dates", False),
    ]
    for name in ("gained", "lost", "persistent"):
        (layer,) = clean_project.mapLayersByName(name)
        assert _fill_rgb(layer) == FILLS[name][0].rsplit(",", 1)[0]
        assert layer.featureCount() == 1
    # nothing was left at the root
    assert [n.name() for n in clean_project.layerTreeRoot().children()] == [
        "Water change 2019-05-02 → 2020-05-02"
    ]


def test_water_change_reports_a_missing_before(provider, clean_project, tmp_path):
    import processing

    _, after = _maps(tmp_path)
    with pytest.raises(QgsProcessingException, match="Before"):
        processing.run("paligemma:water_change", {"AFTER": str(after), "OUTPUT": str(tmp_path / "c.gpkg")})
    assert not (tmp_path / "c.gpkg").exists()


def test_water_occurrence_raster_ramp_and_classes(provider, clean_project, tmp_path):
    import processing

    run = write_run(tmp_path / "run.gpkg", "EPSG:32633", _scenes(), transform=T, width=W, height=H)
    output = tmp_path / "occ.tif"
    classes = tmp_path / "classes.gpkg"
    result = processing.runAndLoadResults(
        "paligemma:water_occurrence",
        {"INPUTS": [f"{run}|layername=water"], "OUTPUT": str(output), "CLASSES": str(classes)},
    )
    assert result["OBSERVATIONS"] == 6
    layers = _group_layers(clean_project, "Water occurrence 2019-01-10–2019-06-15 (6 observations)")
    assert layers == [
        ("permanent", True),
        ("seasonal", True),
        ("rare", True),
        ("observed", False),
        ("water occurrence", True),
    ]
    (raster,) = clean_project.mapLayersByName("water occurrence")
    assert isinstance(raster, QgsRasterLayer) and isinstance(
        raster.renderer(), QgsSingleBandPseudoColorRenderer
    )
    items = raster.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert [i.value for i in items] == [0, 1, 50, 100] and items[0].color.alpha() == 0
    assert raster.dataProvider().sample(raster.extent().center(), 1)[0] in (0.0, 100.0, 50.0, 60.0)
    (permanent,) = clean_project.mapLayersByName("permanent")
    assert permanent.featureCount() == 1


def test_water_change_segments_raster_inputs_in_the_worker(provider, clean_project, tmp_path):
    import processing
    from shapely.geometry import Point
    from synthetic_rasters import make_scene

    before = make_scene(tmp_path / "before.tif", width=300, height=250, water_px=[Point(150, 120).buffer(50)])
    after = make_scene(
        tmp_path / "after.tif", width=300, height=250, water_px=[Point(150, 120).buffer(80)], seed=1
    )
    result = processing.run(
        "paligemma:water_change",
        {
            "BEFORE": str(before.path),
            "AFTER": str(after.path),
            "BANDS": "naip",  # and no ENGINE: the default is the water index, as everywhere
            "OUTPUT": str(tmp_path / "change.gpkg"),
        },
    )
    ring = (after.water_mask() & ~before.water_mask()).sum() * 100 / 0.9996**2 / 1e6
    assert result["GAINED_KM2"] == pytest.approx(ring, rel=0.01)
    assert result["LOST_KM2"] == 0
    left = sorted(p.name for p in tmp_path.iterdir())  # no .aux.xml either (test_no_side_files.py)
    assert left == ["after.tif", "before.tif", "change.gpkg"]  # no temporary segment outputs
