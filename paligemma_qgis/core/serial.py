"""One codec between the frozen specs and JSON: journal fingerprints, Ray, the worker, the run table.

Driven by the dataclasses' own type hints, so a new field needs no code here:

- ``to_data(spec)`` / ``from_data(Spec, data)``: nested JSON objects, checked on the way in
  (unknown names, wrong types and values outside a ``Literal`` are errors with codes);
- ``flatten(spec)`` / ``unflatten(Spec, flat)``: one level of ``name: value`` by each leaf's
  flat name (its field name, or ``metadata["flat"]``). Front ends speak this form: the
  command line's argument names, the worker's job options, the ``run`` table's rows;
- ``fingerprint(spec)``: a hash of what changes the answer (fields whose metadata says
  ``resumable`` are left out), for the journal of a resumable run.

Standard library only (the QGIS plugin builds specs too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import InputError

T = TypeVar("T")


def is_spec(obj: object) -> bool:
    return dataclasses.is_dataclass(obj)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


def flat_name(f: dataclasses.Field) -> str:
    return str(f.metadata.get("flat", f.name))


# ----------------------------------------------------------------------------- nested
def to_data(obj: object) -> Any:
    """A spec (or any value inside one) as JSON values: dicts, lists, str, numbers, bools, None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in _fields(type(obj))}
    if isinstance(obj, (tuple, list)):
        return [to_data(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    return obj


def from_data(cls: type[T], data: object, *, where: str = "") -> T:
    """``cls`` built from ``to_data``'s form, every value checked against its type hint."""
    return _convert(cls, data, where or cls.__name__)


def _bad(where: str, expected: str, value: object) -> InputError:
    return InputError("option_type", field=where.rpartition(".")[2], expected=expected, value=repr(value))


def _convert(tp: object, value: Any, where: str) -> Any:  # noqa: C901 - one branch per kind of hint
    origin = get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _bad(where, "an object", value)
        known = {f.name for f in _fields(tp)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise InputError("option_unknown", field=unknown[0], names=", ".join(unknown))
        hints = _hints(tp)
        kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        return tp(**kwargs)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except InputError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else _bad(where, _type_text(tp), value)
    if origin is Literal:
        if value not in get_args(tp):
            raise InputError(
                "option_choice",
                field=where.rpartition(".")[2],
                value=repr(value),
                choices=", ".join(map(str, get_args(tp))),
            )
        return value
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, str):  # one path or name; numbers as "3,2,1" (an old run table's form)
            value = [value] if args and args[0] is str else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _bad(where, _type_text(tp), value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise _bad(where, _type_text(tp), value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(where, "true or false", value)
    if tp is int:
        if isinstance(value, bool):
            raise _bad(where, "a whole number", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise _bad(where, "a whole number", value)
    if tp is float:
        if isinstance(value, bool):
            raise _bad(where, "a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad(where, "a number", value) from None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad(where, "text", value)
    raise TypeError(f"serial: no conversion for {tp!r} at {where}")


def _type_text(tp: object) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# ----------------------------------------------------------------------------- flat
def leaves(cls: type) -> dict[str, tuple[str, ...]]:
    """Flat name -> the path of field names to that leaf, for a spec class (names must be unique)."""
    return _leaves(cls)


@cache
def _leaves(cls: type) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    hints = _hints(cls)
    for f in _fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            for name, path in _leaves(tp).items():
                if name in out:
                    raise TypeError(f"{cls.__name__}: two fields flatten to {name!r}")
                out[name] = (f.name, *path)
        else:
            name = flat_name(f)
            if name in out:
                raise TypeError(f"{cls.__name__}: two fields flatten to {name!r}")
            out[name] = (f.name,)
    return out


def flatten(obj: object) -> dict[str, Any]:
    """Every leaf of a spec by its flat name, as JSON values."""
    out = {}
    for name, path in leaves(type(obj)).items():
        value = obj
        for part in path:
            value = getattr(value, part)
        out[name] = to_data(value)
    return out


def unflatten(cls: type[T], flat: Mapping[str, Any], *, ignore: tuple[str, ...] = ()) -> T:
    """``cls`` from flat names; names not given keep their defaults, unknown ones are errors."""
    paths = leaves(cls)
    unknown = sorted(set(flat) - set(paths) - set(ignore))
    if unknown:
        raise InputError("option_unknown", field=unknown[0], names=", ".join(unknown))
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        if name not in paths:
            continue
        *groups, leaf = paths[name]
        node = nested
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = value
    return from_data(cls, nested)


# ----------------------------------------------------------------------------- fingerprint
def _resumable(cls: type, path: tuple[str, ...]) -> bool:
    for name in path:
        f = next(f for f in _fields(cls) if f.name == name)
        if f.metadata.get("resumable"):
            return True
        cls = _hints(cls)[name]
    return False


def answer_values(obj: object) -> dict[str, Any]:
    """The flat values that change the answer (leaves whose metadata says ``resumable`` left out)."""
    flat = flatten(obj)
    cls = type(obj)
    return {name: flat[name] for name, path in leaves(cls).items() if not _resumable(cls, path)}


def fingerprint(obj: object, extra: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(hash, the hashed values) of what in ``obj`` changes the answer, plus ``extra`` (the scenes)."""
    values = {**answer_values(obj), **to_data(dict(extra or {}))}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], json.loads(text)
