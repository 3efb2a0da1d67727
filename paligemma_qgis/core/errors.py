"""Errors that carry a code and parameters; each front end says them in its own words.

The core knows facts (the file, the band, the value) and the kind of problem (``code``); it
does not know whether a person reads the error in a terminal (``--aoi``), in the dialog
(*Area*) or in Processing (``AOI``). So an error holds ``code``, ``params`` and the option at
fault (``field``), and a front end renders it with its ``Wording``: its name for every
option, and for codes whose remedy it words itself, its own remedy.

The catalogue (``catalogue()``: code -> problem and remedy templates) lives beside the
code that raises them, one ``messages.py`` per core subpackage; templates name options
only through placeholders, ``{option}`` (the error's field) and ``{opt_NAME}`` (another
option), which each front end fills with its own names. ``str(error)`` is the neutral
rendering, for logs and Python callers.

Standard library only: the QGIS plugin renders the worker's error events with it.
"""

from __future__ import annotations

import importlib
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

# Subpackages whose messages.py hold part of the catalogue (importing them is cheap: data only).
_CATALOGUE_MODULES = ("inputs", "run", "geometry", "model", "temporal", "train", "common")


@dataclass(frozen=True)
class Message:
    """One code's words in core: the problem (facts) and a remedy (what to do), as templates."""

    problem: str
    remedy: str = ""


@dataclass(frozen=True)
class ErrorInfo:
    """What travels from the worker to the plugin: enough to render the error anywhere."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)
    field: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params), "field": self.field}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ErrorInfo:
        params = data.get("params")
        fld = data.get("field")
        return cls(
            code=str(data.get("code") or "unexpected"),
            params=dict(params) if isinstance(params, Mapping) else {},
            field=fld if isinstance(fld, str) else None,
        )


@dataclass(frozen=True)
class Wording:
    """How one front end words errors: its name for each option, and its own remedies.

    ``remedies``: code -> remedy template, for codes whose core remedy this front end cannot
    use as is (it names an option this front end lacks, or an action it offers otherwise);
    ``whole``: code -> a function writing the whole message (composite errors).
    """

    name: str
    labels: Mapping[str, str]
    remedies: Mapping[str, str] = field(default_factory=dict)
    whole: Mapping[str, Callable[[ErrorInfo, Wording], str]] = field(default_factory=dict)


NEUTRAL = Wording("neutral", {})


@cache
def catalogue() -> dict[str, Message]:
    """Every code the core raises, with its templates (from each subpackage's messages.py)."""
    table: dict[str, Message] = {}
    for sub in _CATALOGUE_MODULES:
        module = importlib.import_module(f"{__package__}.{sub}.messages" if sub != "common" else __name__)
        part: Mapping[str, Message] = getattr(module, "MESSAGES", {})
        clash = set(part) & set(table)
        if clash:
            raise RuntimeError(f"error codes defined twice: {sorted(clash)}")
        table.update(part)
    return table


def option_label(name: str, wording: Wording) -> str:
    """A front end's name for an option; the neutral one is the option's own name."""
    if wording.name == "neutral":
        return name
    return wording.labels[name]


class _Fill(dict):
    """Template values: the error's params, plus ``option`` and ``opt_NAME`` in the front end's words."""

    def __init__(self, info: ErrorInfo, wording: Wording) -> None:
        super().__init__(info.params)
        self.info, self.wording = info, wording

    def __missing__(self, key: str) -> str:
        if key == "option":
            return option_label(self.info.field or "", self.wording) if self.info.field else "this option"
        if key.startswith("opt_"):
            return option_label(key[4:], self.wording)
        inner = self.info.params.get(key.removesuffix("_text"))
        if key.endswith("_text") and isinstance(inner, Mapping):  # a nested error, in the same words
            return render(ErrorInfo.from_data(inner), self.wording)
        raise KeyError(key)


def render(info: ErrorInfo, wording: Wording = NEUTRAL) -> str:
    """One line: the problem, then what to do, in ``wording``'s terms."""
    legacy = info.params.get("legacy_message")
    if legacy:  # raised with a sentence, before codes: shown as it is
        return str(legacy)
    whole = wording.whole.get(info.code)
    if whole is not None:
        return whole(info, wording)
    message = catalogue().get(info.code)
    if message is None:  # a code this version does not know (a newer worker): its own text
        return str(info.params.get("message") or info.code)
    fill = _Fill(info, wording)
    text = message.problem.format_map(fill)
    where = info.params.get("where")
    if where and "{where}" not in message.problem and not text.startswith(f"{where}:"):
        text = f"{where}: {text}"
    remedy = wording.remedies.get(info.code, message.remedy)
    if remedy:
        text = f"{text}; {remedy.format_map(fill)}"
    return text


def placeholders(template: str) -> set[str]:
    """The names a template uses (what a test fills to render every code)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _redact(value: object) -> Any:
    """Secrets in URLs never reach a message: every text parameter is redacted (core.redact)."""
    from .redact import redact_tree

    return redact_tree(value)


class PaliGemmaQgisError(Exception):
    """Base of every error the front ends show without a traceback.

    ``PaliGemmaQgisError(code, field=..., **params)``: ``code`` names a catalogue entry;
    ``params`` are JSON values (strings are redacted); ``field`` the option at fault.
    """

    default_field: str | None = None

    def __init__(self, code: str, /, *, field: str | None = None, **params: Any) -> None:
        if " " in code or code not in catalogue():  # a sentence, not a code: not yet converted
            code, params = str(params.pop("code", None) or "legacy"), {"legacy_message": code, **params}
        self.code = code
        self.field = field if field is not None else self.default_field
        self.params = {k: _redact(v) for k, v in params.items()}
        super().__init__(code)

    @property
    def info(self) -> ErrorInfo:
        return ErrorInfo(self.code, self.params, self.field)

    def __str__(self) -> str:
        return render(self.info)

    def at(self, where: str) -> PaliGemmaQgisError:
        """This error, located: its message starts with ``where`` (a file, a scene)."""
        located = type(self).__new__(type(self))
        located.__dict__.update(self.__dict__)
        located.params = {**self.params, "where": _redact(str(where))}
        Exception.__init__(located, self.code)
        return located


class InputError(PaliGemmaQgisError):
    """Bad input file or argument (names the file and what is wrong with it)."""


class OutputExistsError(PaliGemmaQgisError):
    """An output exists and overwriting was not asked for."""

    default_field = "output"


class WeightsError(PaliGemmaQgisError):
    """Model or codec weights missing, corrupt or with an unexpected checksum."""


class OutputError(PaliGemmaQgisError):
    """An output cannot be written (no permission, disk full, ...); names the output."""


class AllScenesFailedError(PaliGemmaQgisError):
    """Every scene of a region run failed, so nothing was written.

    Its parameters carry the first scene's error (rendered in the front end's words) and
    the others' neutral text, so a front end can say all of it in its own words.
    """

    MAX_LISTED = 20  # scenes whose errors travel in the event (a region may have thousands)

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        """``failures``: (scene id, the exception) of every scene, in run order."""
        first_id, first = failures[0]
        first_info = error_info(first)
        super().__init__(
            "all_scenes_failed",
            field=first_info.field,
            count=len(failures),
            first_scene=first_id,
            first=first_info.to_data(),
            failed_scenes={sid: str(exc) for sid, exc in failures[: self.MAX_LISTED]},
        )
        self.first = first


def error_info(exc: BaseException) -> ErrorInfo:
    """Any exception as an ErrorInfo: a core error as it is, anything else as ``unexpected``."""
    if isinstance(exc, PaliGemmaQgisError):
        return exc.info
    return ErrorInfo("unexpected", {"kind": type(exc).__name__, "detail": _redact(str(exc))})


MESSAGES: dict[str, Message] = {
    "unexpected": Message("{kind}: {detail}"),
    "segment_needs_paths": Message("segment needs at least one input and the output GeoPackage"),
    "legacy": Message("{legacy_message}"),
    # options (core.specs, core.serial): the checks that need no file
    "option_range": Message("{option} must be {bound}, got {value}"),
    "option_type": Message("{option} must be {expected}, got {value}"),
    "option_choice": Message("{option} {value} is not one of {choices}"),
    "option_unknown": Message("unknown option(s): {names}"),
    "input_missing": Message("no input raster given"),
    "output_missing": Message("no output given"),
    "output_not_gpkg": Message("{path}: the output must be a GeoPackage (.gpkg)"),
    "mask_is_output": Message("{path}: the mask GeoTIFF and the GeoPackage must be different files"),
    "bands_count": Message("{option} needs 1 (grey) or 3 (R,G,B) band numbers, got {value}"),
    "stretch_range": Message(
        "the stretch percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}"
    ),
    "aoi_extent": Message("{option} as an extent needs 4 numbers xmin,ymin,xmax,ymax, got {value}"),
    "classes_missing": Message("no class to segment given", "name at least one, e.g. water"),
    "compile_needs_static": Message(
        "{option} needs the static cache (a dynamic cache changes shape at every step)",
        "also set {opt_cache} to static",
    ),
    "all_scenes_failed": Message(
        "every scene failed ({count}), so nothing was written; the first, {first_scene}: {first_text}"
    ),
    # the worker process (cli/worker*.py): its job, and what its Python lacks
    "job_not_json": Message("worker job: stdin is not valid JSON ({detail})"),
    "job_empty": Message("worker job: nothing on stdin (expected one JSON object)"),
    "job_not_object": Message("worker job: stdin must hold one JSON object"),
    "job_unknown_task": Message("worker job: unknown task {task} (expected one of {tasks})"),
    "job_options_not_object": Message("worker job: 'options' must be a JSON object"),
    "export_unavailable": Message("worker job: training-data export is not available in this version"),
    "missing_packages": Message(
        "the worker Python {python} has no {package}, needed by {needed}",
        "set up the worker environment, or choose a Python that has it",
    ),
    "plugin_incomplete": Message(
        "the worker cannot import {module}: the plugin's files are incomplete", "reinstall the plugin"
    ),
    "worker_memory": Message("the worker ran out of memory", "map a smaller area or at a coarser resolution"),
}
