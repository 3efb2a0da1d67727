"""Every front end starts from the same defaults: the command line's, which are core.rules'.

Each Processing algorithm of the provider and each dialog builds its worker job with its
default parameters; the job must mean the same run as the command line with no options
(the same segment spec, the same export or occurrence options). Processing's *Water change*
once defaulted to PaliGemma while everything else used the water index: this catches that.
A new algorithm without a case here fails ``test_every_algorithm_is_compared``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsSettings

from paligemma_qgis.cli import build_parser
from paligemma_qgis.cli.change import segment_options
from paligemma_qgis.cli.segment import spec_from_args
from paligemma_qgis.core import rules
from paligemma_qgis.core.specs import segment_spec
from paligemma_qgis.plugin.options import DEVICES, ENGINES
from paligemma_qgis.plugin.provider import algorithms
from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP

# What a QGIS front end sends otherwise on purpose: Processing's file chooser has asked about
# replacing the file (overwrite), and a dialog or algorithm continues its own interrupted run
# and replaces another's (restart_if_changed) where the command line asks for --restart.
POLICY = {"overwrite", "restart_if_changed"}
# The command line shows the engine's own choice as "auto"; a job leaves it out (None): the same run.
AUTO = {"device", "dtype"}


@pytest.fixture(autouse=True)
def fresh_settings():
    QgsSettings().remove(SETTINGS_GROUP)  # Worker setup's Ray address is a parameter's default
    yield
    QgsSettings().remove(SETTINGS_GROUP)


def _algorithm(name: str):
    (alg,) = [a for a in algorithms() if a.name() == name]
    alg.initAlgorithm()
    return alg


def _job(name: str, **given) -> dict:
    """The job algorithm ``name`` builds from its default parameters and ``given`` ones."""
    alg = _algorithm(name)
    parameters = {p.name(): p.defaultValue() for p in alg.parameterDefinitions()}
    parameters.update(given)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    job = alg.build_job(parameters, context, QgsProcessingFeedback())
    sent = set(job["options"]) | set(job["options"].get("segment") or {})
    unnamed = sent - POLICY - {"segment"} - set(alg.OPTIONS)
    assert not unnamed, f"{name} sends {unnamed} without a parameter name for its messages"
    return job


def _same_run(front_end: dict, command_line: dict) -> None:
    """Two flat segment specs mean the same run (up to the policies above)."""
    for key in sorted(set(front_end) | set(command_line)):
        if key in POLICY:
            continue
        mine, cli = front_end.get(key), command_line.get(key)
        if key in AUTO and {mine, cli} <= {None, "auto"}:
            continue
        assert mine == cli, f"{key}: the front end's default {mine!r}, the command line's {cli!r}"


def _cli_segment(raster: Path, output: Path) -> dict:
    return spec_from_args(build_parser().parse_args(["segment", str(raster), str(output)])).flat()


# The algorithms this file compares, one test each below.
COMPARED = {
    "segment_water",
    "segment_water_region",
    "water_change",
    "water_occurrence",
    "export_training_data",
}


def test_segment_water_defaults_are_the_command_lines(water_scene, clean_project, tmp_path):
    job = _job("segment_water", INPUT=str(water_scene.path), OUTPUT=str(tmp_path / "w.gpkg"))
    _same_run(segment_spec(job["options"]).flat(), _cli_segment(water_scene.path, tmp_path / "w.gpkg"))


def test_region_defaults_are_the_command_lines(water_scene, clean_project, tmp_path):
    job = _job("segment_water_region", INPUTS=[str(water_scene.path)], OUTPUT=str(tmp_path / "w.gpkg"))
    _same_run(segment_spec(job["options"]).flat(), _cli_segment(water_scene.path, tmp_path / "w.gpkg"))


def test_the_dialog_defaults_are_the_command_lines(dlg, water_scene, tmp_path):
    dlg.set_raster_file(str(water_scene.path))
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    job = dlg.build_job(tmp_path)
    _same_run(segment_spec(job["options"]).flat(), _cli_segment(water_scene.path, tmp_path / "w.gpkg"))


def test_water_change_defaults_are_the_command_lines(water_scene, clean_project, tmp_path):
    """Raster inputs are segmented as `change` segments them: the water index, not PaliGemma."""
    output = tmp_path / "change.gpkg"
    job = _job("water_change", BEFORE=str(water_scene.path), AFTER=str(water_scene.path), OUTPUT=str(output))
    options = job["options"]
    args = build_parser().parse_args(["change", str(water_scene.path), str(water_scene.path), str(output)])
    frame = {"raster": "x.tif", "output": "x.gpkg"}
    _same_run(
        segment_spec({**frame, **options["segment"]}).flat(),
        segment_spec({**frame, **segment_options(args)}).flat(),
    )
    assert options["segment"]["engine"] == rules.DEFAULT_ENGINE
    assert options["min_area_m2"] == args.min_area_m2
    for key in ("reference", "reference_layer", "before_date", "after_date", "aoi"):
        assert options[key] == getattr(args, key), key


def test_water_occurrence_defaults_are_the_command_lines(tmp_path, clean_project):
    from paligemma_qgis.core.temporal.options import OccurrenceOptions

    output = tmp_path / "occ.tif"
    job = _job("water_occurrence", FOLDER=str(tmp_path), OUTPUT=str(output))
    args = vars(build_parser().parse_args(["occurrence", str(tmp_path), str(output)]))
    _same_options(job["options"], args, OccurrenceOptions)


def _same_options(job: dict, args: dict, options_type) -> None:
    """Every option the command line sets means the same in the job (or its default there)."""
    defaults = {
        f.name: f.default for f in dataclasses.fields(options_type) if f.default is not dataclasses.MISSING
    }
    for key, cli in args.items():
        if key in POLICY or key not in defaults:
            continue
        mine = job.get(key, defaults[key])
        assert mine == cli or (not mine and not cli), (
            f"{key}: the front end's {mine!r}, the command line's {cli!r}"
        )


def test_export_defaults_are_the_command_lines(water_scene, tmp_path, clean_project):
    from paligemma_qgis.core.train.options import ExportOptions

    out_dir = tmp_path / "train"
    job = _job("export_training_data", INPUT=str(water_scene.path), OUTPUT=str(out_dir))
    labels = job["options"]["labels"]
    assert labels == rules.WATER_INDEX_LABELS
    args = vars(
        build_parser().parse_args(["export", str(water_scene.path), str(out_dir), "--labels", labels])
    )
    _same_options(job["options"], args, ExportOptions)


def test_the_export_dialog_defaults_are_the_command_lines(qgis_iface, water_scene, tmp_path, clean_project):
    from paligemma_qgis.core.train.options import ExportOptions
    from paligemma_qgis.plugin.export_dialog import ExportDialog

    dialog = ExportDialog(qgis_iface)
    dialog.raster_picker.set_file(str(water_scene.path))
    dialog.labels_combo.setCurrentIndex(dialog.labels_combo.findData(rules.WATER_INDEX_LABELS))
    dialog.output_widget.setFilePath(str(tmp_path / "train"))
    job = dialog.build_job(tmp_path)
    dialog.deleteLater()
    args = vars(
        build_parser().parse_args(
            ["export", str(water_scene.path), str(tmp_path / "train"), "--labels", rules.WATER_INDEX_LABELS]
        )
    )
    _same_options(job["options"], args, ExportOptions)


def test_every_algorithm_is_compared():
    """A new algorithm of the provider needs its own comparison here."""
    assert {a.name() for a in algorithms()} == COMPARED


@pytest.mark.parametrize("name", sorted(a.name() for a in algorithms()))
def test_choices_default_to_the_rules(name):
    """Engine, device and model parameters, wherever they are, start at core.rules' defaults."""
    alg = _algorithm(name)
    defaults = {p.name(): p.defaultValue() for p in alg.parameterDefinitions()}
    if "ENGINE" in defaults:
        assert ENGINES[defaults["ENGINE"]][0] == rules.DEFAULT_ENGINE
    if "DEVICE" in defaults:
        assert DEVICES[defaults["DEVICE"]][0] == rules.DEFAULT_DEVICE
    if "MODEL" in defaults:
        assert defaults["MODEL"] == rules.DEFAULT_MODEL
    names = set(defaults)
    for option, parameter in alg.OPTIONS.items():
        assert set(parameter.split(" / ")) <= names, f"{name}: {option} names {parameter}, not a parameter"


def test_the_core_uses_the_rules_defaults():
    """core.train and core.temporal take their defaults from core.rules."""
    from paligemma_qgis.core.model.hf_models import DEFAULT_MODEL
    from paligemma_qgis.core.temporal.options import OccurrenceOptions
    from paligemma_qgis.core.train.options import WATER_INDEX, ExportOptions

    export = {f.name: f.default for f in dataclasses.fields(ExportOptions)}
    assert (export["size"], export["valid_fraction"], export["block_size"]) == (
        rules.CHIP_SIZE,
        rules.EXPORT_VALID_FRACTION,
        rules.EXPORT_BLOCK_SIZE,
    )
    assert (export["min_object_pixels"], export["empty_policy"], export["empty_cap"]) == (
        rules.EXPORT_MIN_OBJECT_PIXELS,
        rules.EXPORT_EMPTY_POLICY,
        rules.EMPTY_CAP,
    )
    assert WATER_INDEX == rules.WATER_INDEX_LABELS
    occurrence = {f.name: f.default for f in dataclasses.fields(OccurrenceOptions)}
    assert (occurrence["permanent"], occurrence["rare"], occurrence["min_observations"]) == (
        rules.OCCURRENCE_PERMANENT,
        rules.OCCURRENCE_RARE,
        rules.OCCURRENCE_MIN_OBSERVATIONS,
    )
    assert DEFAULT_MODEL == rules.DEFAULT_MODEL
