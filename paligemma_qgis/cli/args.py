"""Parsed arguments -> the core's typed options, through the one codec (core.serial).

Each option's ``dest`` is the options type's flat name (``dest=`` where the flag differs), so
a command builds its options in one call and names no field by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from ..core.serial import leaves, unflatten

T = TypeVar("T")


def options_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """``cls`` from the arguments named like its fields (unset ones keep its defaults), plus ``values``."""
    names = leaves(cls)
    flat = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return unflatten(cls, {**flat, **values})


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the options type ``cls`` (for an argument's ``default=``)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default
