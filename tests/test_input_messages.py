"""The error codes of core/inputs: each renders in neutral words and in the command line's.

The neutral rendering (logs, Python callers, the scenes layer) names options by their own
names and never by a flag; the command line fills in its flags. Every raise in inputs/
passes a code from ``inputs/messages.py``, never a sentence (the legacy path).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from paligemma_qgis.cli.wording import cli_message, cli_wording
from paligemma_qgis.core.errors import ErrorInfo, InputError, catalogue, placeholders, render
from paligemma_qgis.core.inputs.messages import MESSAGES

FLAG = re.compile(r"(?<![\w-])--[a-z]")
INPUTS = Path(__file__).resolve().parents[1] / "paligemma_qgis" / "core" / "inputs"
# The option at fault, for codes whose words name it ({option}).
FIELDS = {
    "band_list_count": "bands",
    "resolution_rotated": "resolution",
    "resolution_not_positive": "resolution",
}


def _info(code: str) -> ErrorInfo:
    message = MESSAGES[code]
    names = placeholders(message.problem) | placeholders(message.remedy)
    params: dict[str, object] = {
        n: f"<{n}>" for n in names if n != "option" and not n.startswith("opt_") and not n.endswith("_text")
    }
    for name in names:
        if name.endswith("_text"):  # a nested error
            params[name.removesuffix("_text")] = ErrorInfo(
                "file_not_found", {"path": "p", "what": "x"}
            ).to_data()
    return ErrorInfo(code, params, FIELDS.get(code, "raster"))


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_code_renders_without_a_flag_in_neutral_words(code: str) -> None:
    info = _info(code)
    neutral, cli = render(info), render(info, cli_wording())
    assert not FLAG.search(neutral), neutral
    assert "{" not in neutral and "{" not in cli
    assert "\n" not in neutral and "\n" not in cli


def test_the_command_line_names_its_flags() -> None:
    skip = InputError("raster_read_failed", failure=_info("raster_read_failed").params["failure"])
    assert cli_message(skip) == "p: x not found; --on-read-error skip maps unreadable blocks as nodata"
    assert str(skip) == "p: x not found; on_read_error skip maps unreadable blocks as nodata"
    large = InputError("image_too_large", path="a.png", what="image", size="400 megapixels", limit="89")
    assert cli_message(large).endswith(
        "(a decompression bomb guard); pass --allow-large-images if you trust the file"
    )
    preset = InputError("preset_mismatch", field="preset", path="x.tif", preset="naip", counts="4", count=3)
    assert cli_message(preset).endswith("; use --bands and --green/--nir/--swir instead")


def _raises_with_a_sentence(path: Path) -> list[str]:
    """``SomeError(...)`` whose first argument is text, not a code of the catalogue.

    A name (a code chosen a few lines above) passes; programming errors keep their sentences.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        name = getattr(getattr(node, "func", None), "id", "")
        if not (isinstance(node, ast.Call) and name.endswith("Error") and node.args):
            continue
        if name in ("ValueError", "RuntimeError", "TypeError"):
            continue
        first = node.args[0]
        if isinstance(first, ast.Name) or (isinstance(first, ast.Constant) and first.value in catalogue()):
            continue
        found.append(f"{path.name}:{node.lineno} {ast.unparse(first)[:60]}")
    return found


def test_inputs_raise_codes_not_sentences() -> None:
    files = sorted(p for p in INPUTS.glob("*.py") if p.name != "stac.py")  # stac.py: its own rewrite
    assert [hit for p in files for hit in _raises_with_a_sentence(p)] == []
