"""Issue 21: one group per run, at the top of the Layers panel whatever is selected there, named by
what it holds, every result layer inside it: segment, region, change, occurrence and export.

Real headless QGIS and Processing; the Layers panel's selection is the layer tree's insertion point
(what QGIS sets from the selected node), here inside an earlier map's group.
"""

from __future__ import annotations

import sys

import pytest
from qgis.core import QgsApplication, QgsLayerTreeGroup, QgsLayerTreeRegistryBridge, QgsVectorLayer
from shapely.geometry import box
from synthetic_rasters import make_scene
from test_occurrence import H, T, W, _scenes
from waiting import wait_for_task
from water_series import SceneTruth, write_run

from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.run_text import change_name, occurrence_name, region_name, stopped_text
from paligemma_qgis.plugin.task import WorkerTask

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


@pytest.fixture
def selected_group(clean_project):
    """An earlier map's group, with a layer, selected in the Layers panel (new layers go into it)."""
    root = clean_project.layerTreeRoot()
    group = root.addGroup("Earlier map")
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633", "earlier water", "memory")
    clean_project.addMapLayer(layer, False)
    group.addLayer(layer)
    bridge = clean_project.layerTreeRegistryBridge()
    bridge.setLayerInsertionPoint(QgsLayerTreeRegistryBridge.InsertionPoint(group, 0))
    yield group
    bridge.setLayerInsertionPoint(QgsLayerTreeRegistryBridge.InsertionPoint(root, 0))


def _top(project) -> list[tuple[str, list[str]]]:
    """The top of the layer tree: (group name, its layers) and bare layers as (name, [])."""
    out = []
    for child in project.layerTreeRoot().children():
        if isinstance(child, QgsLayerTreeGroup):
            assert not [c for c in child.children() if isinstance(c, QgsLayerTreeGroup)], "nested groups"
            out.append((child.name(), [n.layer().name() for n in child.findLayers()]))
        else:
            out.append((child.name(), []))
    return out


def _maps(tmp_path):
    lake0 = box(501_000, 4_996_000, 502_000, 4_997_000)
    lake1 = box(501_000, 4_996_000, 502_500, 4_997_000)
    frame = box(499_000, 4_994_000, 506_000, 4_999_000)
    before = write_run(
        tmp_path / "before.gpkg", "EPSG:32633", [SceneTruth("a", "1985-05-02", [lake0], frame)]
    )
    after = write_run(tmp_path / "after.gpkg", "EPSG:32633", [SceneTruth("b", "2020-05-02", [lake1], frame)])
    return before, after


def test_change_loads_one_top_level_group_while_another_maps_group_is_selected(
    provider, selected_group, clean_project, tmp_path
):
    import processing

    before, after = _maps(tmp_path)
    processing.runAndLoadResults(
        "paligemma:water_change",
        {"BEFORE": str(before), "AFTER": str(after), "OUTPUT": str(tmp_path / "c.gpkg")},
    )
    assert _top(clean_project) == [
        ("Water change 1985-05-02 → 2020-05-02", ["gained", "lost", "persistent", "unknown", "observed on both dates"]),
        ("Earlier map", ["earlier water"]),
    ]  # fmt: skip
    # A second run of the same maps gets a group of its own, on top.
    processing.runAndLoadResults(
        "paligemma:water_change",
        {"BEFORE": str(before), "AFTER": str(after), "OUTPUT": str(tmp_path / "d.gpkg")},
    )
    names = [name for name, _ in _top(clean_project)]
    assert names == ["Water change 1985-05-02 → 2020-05-02"] * 2 + ["Earlier map"]


def test_change_with_only_its_bands_set_segments_rasters_with_the_water_index(
    provider, clean_project, tmp_path
):
    """Processing's Water change with two rasters and BANDS alone (the engine left at its default):
    the water index maps both, no model needed (the first try of issue 21 failed on PaliGemma)."""
    import processing
    from shapely.geometry import Point

    before = make_scene(tmp_path / "1985.tif", width=300, height=250, water_px=[Point(150, 120).buffer(50)])
    after = make_scene(
        tmp_path / "2020.tif", width=300, height=250, water_px=[Point(150, 120).buffer(80)], seed=1
    )
    result = processing.run(
        "paligemma:water_change",
        {
            "BEFORE": str(before.path),
            "AFTER": str(after.path),
            "BANDS": "naip",
            "OUTPUT": str(tmp_path / "c.gpkg"),
        },
    )
    assert result["GAINED_KM2"] > 0 and result["LOST_KM2"] == 0


def test_occurrence_raster_and_classes_share_one_group(provider, selected_group, clean_project, tmp_path):
    import processing

    run = write_run(tmp_path / "run.gpkg", "EPSG:32633", _scenes(), transform=T, width=W, height=H)
    processing.runAndLoadResults(
        "paligemma:water_occurrence",
        {"INPUTS": [f"{run}|layername=water"], "OUTPUT": str(tmp_path / "occ.tif"),
         "CLASSES": str(tmp_path / "classes.gpkg")},
    )  # fmt: skip
    (first, layers), rest = _top(clean_project)[0], _top(clean_project)[1:]
    assert first.startswith("Water occurrence") and first.endswith("(6 observations)")
    assert layers == ["permanent", "seasonal", "rare", "observed", "water occurrence"]
    assert rest == [("Earlier map", ["earlier water"])]


def test_segment_and_region_algorithms_load_their_layers_as_one_group(
    provider, selected_group, clean_project, tmp_path
):
    import processing

    a = make_scene(tmp_path / "lakes_a.tif", width=260, height=220, seed=1)
    folder = tmp_path / "more"
    folder.mkdir()
    make_scene(folder / "lakes_b.tif", crs="EPSG:4326", width=240, height=220, seed=2)
    (folder / "broken.tif").write_text("not a raster")
    processing.runAndLoadResults(
        "paligemma:segment_water",
        {"INPUT": str(a.path), "ENGINE": 1, "BANDS": "naip", "OUTPUT": str(tmp_path / "one.gpkg")},
    )
    processing.runAndLoadResults(
        "paligemma:segment_water_region",
        {"INPUTS": [str(a.path)], "FOLDER": str(folder), "ENGINE": 1, "BANDS": "naip",
         "OUTPUT": str(tmp_path / "region.gpkg")},
    )  # fmt: skip
    assert _top(clean_project) == [
        ("Water in 3 rasters (1 failed)", ["water", "scenes", "chips"]),
        ("Water in lakes_a", ["water", "chips"]),
        ("Earlier map", ["earlier water"]),
    ]


def test_the_dialogs_run_lands_at_the_top_named_by_what_it_holds(
    selected_group, clean_project, qgis_iface, tmp_path
):
    a = make_scene(tmp_path / "lakes_a.tif", width=260, height=220, seed=1)
    job = segment_job(str(a.path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip")
    task = WorkerTask("Water in lakes_a", job, python=sys.executable, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded, task.error
    assert _top(clean_project) == [
        ("Water in lakes_a", ["water", "chips"]),
        ("Earlier map", ["earlier water"]),
    ]


def test_names_say_what_the_group_holds():
    assert region_name(5) == "Water in 5 rasters" and region_name(5, 2) == "Water in 5 rasters (2 failed)"
    assert region_name(1) == "Water in 1 raster"
    assert change_name("1985", "2020") == "Water change 1985 → 2020"
    assert change_name(None, "2020") == "Water change before → 2020"
    assert (
        occurrence_name(6, ["2019-05-02", None, "2024-08-01"])
        == "Water occurrence 2019-05-02–2024-08-01 (6 observations)"
    )
    assert occurrence_name(1, []) == "Water occurrence (1 observation)"
    assert (
        stopped_text({"scenes": 12, "total": 36, "chips": 0}, True)
        == "Stopped: 12 of 36 scenes are kept. Run again to continue."
    )
    assert (
        stopped_text({"scenes": 0, "total": 1, "chips": 40}, True)
        == "Stopped: the answers for 40 chips are kept. Run again to continue."
    )
    assert stopped_text({"scenes": 0, "total": 1, "chips": 0}, False).startswith(
        "Stopped before a scene was finished"
    )
    assert stopped_text({}, True) == "Stopped: the work done so far is kept. Run again to continue."
    assert stopped_text({}, False, started=False) == "Stopped before the run started; nothing was written."
