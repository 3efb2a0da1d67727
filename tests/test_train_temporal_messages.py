"""Errors of core/train and core/temporal: codes, not sentences; each renders on the command line.

Read from the source (ast), so a raise added with a sentence, or with a code nobody wrote
words for, fails here before a user meets it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from paligemma_qgis.cli.wording import cli_wording
from paligemma_qgis.core.errors import ErrorInfo, catalogue, placeholders, render
from paligemma_qgis.core.temporal.messages import MESSAGES as TEMPORAL
from paligemma_qgis.core.train.messages import MESSAGES as TRAIN

CORE = Path(__file__).resolve().parents[1] / "paligemma_qgis" / "core"
AREAS = (CORE / "train", CORE / "temporal")
CODED = {"InputError", "OutputError", "OutputExistsError", "WeightsError", "PaliGemmaQgisError"}
FLAG = re.compile(r"(?<![\w-])--[a-z]")
WORKER_ONLY = {"segment"}  # options only the worker's jobs and Python callers set, never a flag


def _raises() -> list[tuple[str, ast.Call]]:
    found = []
    for area in AREAS:
        for path in sorted(area.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                    if name in CODED:
                        found.append((f"{path.relative_to(CORE)}:{node.lineno}", node.exc))
    return found


def test_every_raise_passes_a_known_code():
    """...and where its words name the option at fault, the command line has a name for that option."""
    codes, labels = catalogue(), cli_wording().labels
    raises = _raises()
    assert len(raises) > 60
    for where, call in raises:
        first = call.args[0] if call.args else None
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), f"{where}: not a code"
        assert first.value in codes, f"{where}: {first.value!r} has no words in a messages.py"
        message = codes[first.value]
        field = next((k.value for k in call.keywords if k.arg == "field"), None)
        if "option" in placeholders(message.problem) | placeholders(message.remedy):
            assert field is not None, f"{where}: its words name the option, but no field is given"
            if isinstance(field, ast.Constant) and field.value not in WORKER_ONLY:
                assert field.value in labels, f"{where}: the command line has no name for {field.value!r}"


@pytest.mark.parametrize("code", sorted({**TRAIN, **TEMPORAL}))
def test_every_code_renders_on_the_command_line_without_a_flag_in_core(code):
    message = catalogue()[code]
    for template in (message.problem, message.remedy):
        assert not FLAG.search(template), template  # options only as {option} / {opt_NAME}
    names = placeholders(message.problem) | placeholders(message.remedy)
    params = {n: f"<{n}>" for n in names if n != "option" and not n.startswith("opt_")}
    # The field, where a template names it: one the command line has a name for.
    field = "overwrite" if "option" in names else None
    if code in ("pairs_folder_not_found", "pairs_folder_missing"):
        field = "images"
    elif code in ("finetune_option_missing",):
        field = "data_dir"
    elif code.startswith("evaluate_nodata"):
        field = "truth_nodata"
    text = render(ErrorInfo(code, params, field), cli_wording())
    assert "{" not in text and text.strip()
