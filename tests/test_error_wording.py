"""Every error code has a rendering in every front end: the terminal, the dialogs, Processing.

The catalogue is read at run time (core.errors.catalogue()), so a code another module adds
tomorrow is held to the same rules: each template filled with sample values gives one
non-empty line without a placeholder left; an option appears only by the front end's name
for it (a front end that lacks the option gives the code a remedy of its own); the QGIS front
ends never show a command-line flag nor an option's raw name.
"""

from __future__ import annotations

import re

import pytest

from paligemma_qgis.cli.wording import cli_wording
from paligemma_qgis.core.errors import ErrorInfo, Wording, catalogue, placeholders, render
from paligemma_qgis.core.serial import leaves
from paligemma_qgis.core.specs import SegmentSpec
from paligemma_qgis.plugin.error_text import EXPORT_DIALOG, PLAIN_NAMES, SEGMENT_DIALOG, FrontEnd, translate
from paligemma_qgis.plugin.error_whole import WHOLE, say
from paligemma_qgis.plugin.provider import algorithms

FLAG = re.compile(r"(?<![\w-])--[a-z]")
NESTED = {"code": "no_scene_mapped", "params": {}, "field": None}  # what a ``*_text`` placeholder renders


def gui_front_ends() -> dict[str, FrontEnd]:
    """The dialogs' and every Processing algorithm's front end."""
    fronts = {"dialog": SEGMENT_DIALOG, "export dialog": EXPORT_DIALOG}
    fronts.update({f"processing {alg.name()}": alg.FRONT for alg in algorithms()})
    return fronts


def sample_params(code: str) -> dict:
    """A value for every placeholder of ``code``'s templates (none has a brace or an underscore)."""
    message = catalogue()[code]
    params: dict = {}
    for name in placeholders(message.problem) | placeholders(message.remedy):
        if name == "option" or name.startswith("opt_"):
            continue
        if name.endswith("_text"):
            params[name.removesuffix("_text")] = NESTED
        else:
            params[name] = f"[{name.replace('_', ' ')}]"
    return params


def strict(wording: Wording) -> Wording:
    """``wording`` whose labels fail on an option it has no name for (instead of "this option")."""
    return Wording(wording.name, dict(wording.labels), wording.remedies, wording.whole)


def raw_names(labels) -> set[str]:
    """Option names that read as code when they appear in a message (the ones with an underscore)."""
    return {name for name in {*labels, *leaves(SegmentSpec)} if "_" in name}


def _check(text: str, where: str, gui: bool, raw: set[str]) -> None:
    assert text.strip() and "\n" not in text, where
    assert "{" not in text and "}" not in text, (where, text)
    if gui:
        assert "None" not in text, (where, text)  # a fact the job did not have ("None: the water index ...")
        assert not FLAG.search(text), (where, text)
        assert not [name for name in raw if name in text], (where, text)


def _render_all(wording: Wording, codes, fields, gui: bool, name: str) -> int:
    raw = raw_names(wording.labels) if gui else set()
    rendered = 0
    for code in codes:
        params = sample_params(code) if code in catalogue() else {}
        for field in fields:
            info = ErrorInfo(code, params, field)
            try:
                text = say(info, wording) if gui else render(info, wording)
            except KeyError as exc:
                pytest.fail(f"{name}: code {code!r} names option {exc} that this front end has no name for")
            _check(text, f"{name} {code} field={field}", gui, raw)
            rendered += 1
    return rendered


def test_the_catalogue_is_found():
    codes = catalogue()
    for code in ("band_missing", "all_scenes_failed", "output_exists", "missing_packages", "ray_unreachable"):
        assert code in codes


def test_every_code_renders_on_the_command_line():
    wording = strict(cli_wording())
    count = _render_all(wording, sorted(catalogue()), [None, *sorted(wording.labels)], False, "cli")
    assert count > len(catalogue())


@pytest.mark.parametrize("name", sorted(gui_front_ends()))
def test_every_code_renders_in_each_qgis_front_end(name):
    """Every code of the catalogue, and every code worded whole, with the error's field being
    none or any option the front end names."""
    front = gui_front_ends()[name]
    wording = strict(front.wording({}))
    codes = sorted({*catalogue(), *WHOLE})
    _render_all(wording, codes, [None, *sorted(front.labels)], True, name)


@pytest.mark.parametrize("name", sorted(gui_front_ends()))
def test_whole_messages_use_the_job(name):
    """The composite messages name what the run used: its model, output and Ray address."""
    front = gui_front_ends()[name]
    options = {"model": "me/my-model", "output": "/data/w.gpkg", "ray_address": "ray://gpu:10001"}
    gated = translate("", {"code": "model_gated", "field": "model"}, options, front)
    assert "https://huggingface.co/me/my-model" in gated
    busy = translate("", {"code": "output_busy", "params": {"holder": "process 7"}}, options, front)
    assert "/data/w.gpkg (process 7)" in busy
    ray = translate("", {"code": "ray_missing", "field": "ray_address"}, options, front)
    assert "ray://gpu:10001" in ray and not FLAG.search(ray)


def test_every_scene_failed_says_the_first_in_the_same_words():
    first = {"code": "band_unknown", "field": "nir", "params": {"where": "/data/a.tif"}}
    info = {"code": "all_scenes_failed", "params": {"count": 3, "first_scene": "lakes_a", "first": first}}
    dialog = translate("", info, {"raster": ["/data/a.tif", "/data/b.tif"]}, SEGMENT_DIALOG)
    assert dialog.startswith(
        "Every scene failed (3), so nothing was written. The first, lakes_a: Green / NIR"
    )
    assert dialog.endswith("Each scene's error is in the log panel.")
    export = translate("", info, {}, [f for n, f in gui_front_ends().items() if "export_training" in n][0])
    assert "set BANDS to the sensor preset" in export  # Processing's export has no NIR parameter


def test_an_option_a_front_end_lacks_is_never_named_raw():
    """scene_too_big's core remedy names max_pixels, which only the command line has."""
    info = {"code": "scene_too_big", "params": {"path": "a.tif", "width": 1, "height": 2, "limit": 1}}
    assert "--max-pixels" in render(ErrorInfo.from_data(info), cli_wording())
    for name, front in gui_front_ends().items():
        text = translate("", info, {}, front)
        assert "max_pixels" not in text and "this option" not in text, (name, text)
    assert "choose a smaller" not in translate("", info, {}, SEGMENT_DIALOG)  # the dialog's own words
    assert "with Area" in translate("", info, {}, SEGMENT_DIALOG)


def test_a_code_without_a_catalogue_entry_reads_as_its_message():
    """The plugin's own failures (the worker did not start) carry no code: their words stand."""
    assert translate("cannot start the worker Python /x", {}, {}, SEGMENT_DIALOG) == (
        "cannot start the worker Python /x"
    )


def test_a_legacy_output_exists_is_worded_as_output_exists():
    info = {
        "code": "legacy",
        "kind": "OutputExistsError",
        "params": {"legacy_message": "x (use --overwrite)"},
    }
    text = translate("x", info, {"output": "/d/w.gpkg"}, SEGMENT_DIALOG)
    assert text == "GeoPackage: /d/w.gpkg exists. Tick 'Overwrite an existing file' or choose another name."


def _shown_texts(widget) -> set[str]:
    from qgis.PyQt.QtWidgets import QAbstractButton, QGroupBox, QLabel

    texts = {w.text() for w in widget.findChildren(QLabel)}
    texts |= {w.text() for w in widget.findChildren(QAbstractButton)}
    return texts | {w.title() for w in widget.findChildren(QGroupBox)}


# Options a dialog sends without a field of its own: Worker setup's Ray address, and its policy.
NOT_IN_THE_DIALOG = {"ray_address", "executor", "restart_if_changed"}


@pytest.mark.parametrize("engine", ["water-index", "paligemma"])
def test_the_dialog_names_each_option_as_it_shows_it(dlg, water_scene, tmp_path, engine):
    """Each name the dialog's messages use is a label, box or title the dialog shows, and each
    option its job sends has such a name."""
    shown = _shown_texts(dlg)
    for option, name in SEGMENT_DIALOG.labels.items():
        if PLAIN_NAMES.get(option) == name:  # another command's option, in plain words
            continue
        assert option in NOT_IN_THE_DIALOG or name in shown, (option, name)
    dlg.set_raster_file(str(water_scene.path))
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.engine_combo.setCurrentIndex(dlg.engine_combo.findData(engine))
    options = dlg.build_job(tmp_path)["options"]
    assert set(options) - NOT_IN_THE_DIALOG <= set(SEGMENT_DIALOG.labels), set(options) - set(
        SEGMENT_DIALOG.labels
    )


def test_the_export_dialog_names_each_option_as_it_shows_it(qgis_iface, water_scene, tmp_path, clean_project):
    from paligemma_qgis.core import rules
    from paligemma_qgis.plugin.export_dialog import ExportDialog

    dialog = ExportDialog(qgis_iface)
    shown = _shown_texts(dialog)
    for option, name in EXPORT_DIALOG.labels.items():
        if PLAIN_NAMES.get(option) == name:  # another command's option, in plain words
            continue
        assert name in shown or name.split(" (")[0] in shown, (option, name)
    dialog.raster_picker.set_file(str(water_scene.path))
    dialog.labels_combo.setCurrentIndex(dialog.labels_combo.findData(rules.WATER_INDEX_LABELS))
    dialog.output_widget.setFilePath(str(tmp_path / "train"))
    options = dialog.build_job(tmp_path)["options"]
    dialog.deleteLater()
    assert set(options) <= set(EXPORT_DIALOG.labels), set(options) - set(EXPORT_DIALOG.labels)
