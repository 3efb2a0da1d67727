"""The worker's JSON events, checked field by field before the plugin believes them (no QGIS import).

The worker is our own code, but what it prints passes through a pipe that other code in
that process can write to too, and a result's fields end up in ``finished()`` on QGIS's
GUI thread, where a wrong type (a list where a count belongs) would raise inside QGIS.
So every event is checked against the fields the plugin reads: one that does not match is
logged and ignored (``problem`` says why), never half-used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]
KINDS = ("progress", "result", "error", "cancelled")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _text_map(value: Any) -> bool:
    """{scene: error}: text keys, text (or null) values."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    )


def _number_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _number(v) for k, v in value.items())


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _mapping(value: Any) -> bool:
    return isinstance(value, dict)


# The fields the plugin reads, by event (a result's by task); a field left out is fine, a field
# of another type is not.
_FIELDS: dict[str, dict[str, Check]] = {
    "progress": {"done": _int, "total": _int, "message": _text},
    "error": {
        "message": _text, "details": _text, "code": _optional(_text), "field": _optional(_text),
        "kind": _optional(_text), "params": _optional(_mapping), "packages": _texts,
        "engine_only": _optional(_text),
    },
    "cancelled": {"message": _text, "kept": _mapping},
}  # fmt: skip
_RESULTS: dict[str, dict[str, Check]] = {
    "segment": {
        "scenes": _int, "failed": _int, "polygons": _int, "chips": _int, "skipped": _int,
        "water_area_km2": _number, "seconds": _number, "device": _optional(_text),
        "output": _optional(_text), "engine": _optional(_text), "details": _mapping,
    },
    "change": {
        "notes": _texts, "areas_m2": _number_map, "before_date": _optional(_text),
        "after_date": _optional(_text), "output": _optional(_text),
    },
    "occurrence": {"notes": _texts, "observations": _int, "output": _optional(_text)},
    "export": {
        "n_train": _int, "n_valid": _int, "n_objects": _int, "n_empty_written": _int,
        "mean_codec_iou": _optional(_number), "min_codec_iou": _optional(_number),
        "warnings": _texts, "out_dir": _optional(_text),
    },
}  # fmt: skip
# Fields inside a segment result's ``details``, an error's ``params`` and a cancel's ``kept``.
_NESTED: dict[tuple[str, str], dict[str, Check]] = {
    ("result", "details"): {
        "failed_scenes": _text_map,
        "resumed": _flag,
        "scenes_from_journal": _int,
        "chips_from_journal": _int,
    },
    ("error", "params"): {"failed_scenes": _text_map, "count": _int},
    ("cancelled", "kept"): {"scenes": _int, "total": _int, "chips": _int},
}


def parse_line(line: str) -> dict | None:
    """A JSON object with an ``event`` key, or None (a line some library printed)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def problem(event: Mapping[str, Any], task: str = "segment") -> str | None:
    """What is wrong with ``event`` of a ``task`` job (None: every field the plugin reads has its type)."""
    kind = event.get("event")
    if kind not in KINDS:
        return f"unknown event {str(kind)[:40]!r}"
    fields = _RESULTS.get(task, {}) if kind == "result" else _FIELDS[kind]
    for name, check in fields.items():
        if name in event and not check(event[name]):
            return f"{kind} event: field {name!r} is {type(event[name]).__name__}"
        nested = _NESTED.get((kind, name))
        if nested and isinstance(event.get(name), dict):
            for key, inner in nested.items():
                value = event[name].get(key)
                if key in event[name] and value is not None and not inner(value):
                    return f"{kind} event: field {name}.{key} is {type(value).__name__}"
    if kind == "error" and not _text(event.get("message")):
        return "error event without a message"
    return None


def describe(line: str, why: str, limit: int = 300) -> str:
    """The log line for an ignored event."""
    text = line.strip()
    return f"ignored a malformed worker event ({why}): {text[:limit]}{'…' if len(text) > limit else ''}"
