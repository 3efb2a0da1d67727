"""Which band is what: RGB rendering bands, band roles and the alpha band, decided from facts.

A pure function of what the file says (band count, descriptions, which band it tags alpha)
and what the user asked for (bands, preset, green/nir/swir), so every rule is tested on a
table without a raster. The rules:

- Band roles: explicit overrides > the file's own band descriptions > the preset's order
  (a file that names its bands is trusted over a guess).
- RGB rendering: the bands asked for > the preset's > described red/green/blue > the first
  three data bands (one band: grey, shown as R = G = B).
- A band the file tags alpha is alpha, unless it was asked for by number (then it is data),
  or a preset guessed it and its values are not alpha-like (GDAL tags band 4 of any 4-band
  uint8 file alpha, NAIP's NIR included). Only that last case needs the pixels: the caller
  answers ``holds_alpha(band)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError
from .bands import PRESETS, roles_from_descriptions

OVERRIDE_ROLES = ("green", "nir", "swir")  # the roles a user sets by band number


@dataclass(frozen=True)
class BandFacts:
    """What a raster file says about its bands (``path``: how errors name the file)."""

    path: str
    count: int
    descriptions: tuple[str | None, ...] = ()
    alpha_tag: int | None = None  # the first band the file tags alpha (1-based), if any


@dataclass(frozen=True)
class BandRequest:
    """What the user asked for: RGB bands (parsed, 1-based), a preset, band roles by number."""

    bands: tuple[int, ...] | None = None
    preset: str | None = None
    roles: Mapping[str, int] = field(default_factory=dict)  # green/nir/swir -> band

    def __post_init__(self) -> None:
        if self.bands is not None and len(self.bands) not in (1, 3):
            raise ValueError(f"bands must be 1 (grey) or 3 (R,G,B) band numbers, got {self.bands}")
        unknown = set(self.roles) - set(OVERRIDE_ROLES)
        if unknown:
            raise ValueError(f"roles set by band number are {OVERRIDE_ROLES}, not {sorted(unknown)}")


@dataclass(frozen=True)
class BandChoice:
    """The decision: RGB rendering bands, band roles, the alpha band and the data bands."""

    rgb: tuple[int, int, int]
    roles: Mapping[str, int]
    alpha: int | None
    data_bands: tuple[int, ...]


def parse_bands(
    value: str | Sequence[int] | None, *, path: str | os.PathLike[str] = ""
) -> tuple[int, ...] | None:
    """'3,2,1' or [3, 2, 1] -> (3, 2, 1); one band means grey."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            bands = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        except ValueError:
            raise InputError("band_list_bad", field="bands", path=str(path), value=repr(value)) from None
    else:
        bands = tuple(int(v) for v in value)
    if len(bands) not in (1, 3):
        raise InputError("band_list_count", field="bands", path=str(path), value=repr(value))
    return bands


def check_preset(path: str, preset: str | None) -> None:
    """InputError unless ``preset`` is None or one of PRESETS."""
    if preset is not None and preset not in PRESETS:
        raise InputError(
            "preset_unknown", field="preset", path=path, value=repr(preset), choices=", ".join(PRESETS)
        )


def counts_text(counts: tuple[int, ...]) -> str:
    """(6, 7, ..., 12) -> '6 to 12'; (12, 13) -> '12 or 13'."""
    if len(counts) > 2 and counts == tuple(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]} to {counts[-1]}"
    return " or ".join(map(str, counts))


def _check(facts: BandFacts, band: int, role: str) -> int:
    """``band`` when the raster has it; ``role``: "RGB" or a band role (the error's field)."""
    if not 1 <= band <= facts.count:
        field = "bands" if role == "RGB" else role
        raise InputError(
            "band_out_of_range", field=field, where=facts.path, role=role, band=band, count=facts.count
        )
    return band


def alpha_band(facts: BandFacts, request: BandRequest, holds_alpha: Callable[[int], bool]) -> int | None:
    """The band read as alpha (validity), or None: see the module's rules."""
    a = facts.alpha_tag
    if a is None:
        return None
    explicit = {*(request.bands or ()), *request.roles.values()}
    preset = PRESETS[request.preset] if request.preset else None
    guessed = {*preset.rgb, *preset.roles_for(facts.count).values()} if preset else set()
    if a in explicit or (a in guessed and not holds_alpha(a)):
        return None
    return a


def _roles(facts: BandFacts, request: BandRequest, alpha: int | None) -> dict[str, int]:
    """Band roles: overrides > descriptions > preset."""
    roles: dict[str, int] = {}
    described = roles_from_descriptions(facts.descriptions, request.preset)
    if request.preset:
        p = PRESETS[request.preset]
        if p.counts and facts.count not in p.counts and not described:
            raise InputError(
                "preset_mismatch",
                field="preset",
                path=facts.path,
                preset=request.preset,
                counts=counts_text(p.counts),
                count=facts.count,
            )
        roles.update({r: b for r, b in p.roles_for(facts.count).items() if b <= facts.count and b != alpha})
    roles.update(described)
    for role in OVERRIDE_ROLES:
        band = request.roles.get(role)
        if band is not None:
            roles[role] = _check(facts, int(band), role)
    return roles


def _rgb(
    facts: BandFacts, request: BandRequest, roles: Mapping[str, int], data_bands: tuple[int, ...]
) -> tuple[int, int, int]:
    """RGB rendering: the bands asked for > preset > described red/green/blue > first data bands."""
    chosen = request.bands
    if chosen is None and request.preset:
        rgb = PRESETS[request.preset].rgb
        if max(rgb) > facts.count:
            raise InputError(
                "preset_rgb_missing",
                field="preset",
                path=facts.path,
                preset=request.preset,
                rgb=str(rgb),
                count=facts.count,
            )
        chosen = rgb
    if chosen is None and all(r in roles for r in ("red", "green", "blue")):
        chosen = (roles["red"], roles["green"], roles["blue"])
    if chosen is None:
        chosen = data_bands[:3] if len(data_bands) >= 3 else data_bands[:1]
    for b in chosen:
        _check(facts, b, "RGB")
    r, g, b = chosen * 3 if len(chosen) == 1 else chosen
    return r, g, b


def resolve_bands(
    facts: BandFacts, request: BandRequest, holds_alpha: Callable[[int], bool] = lambda band: True
) -> BandChoice:
    """Decide RGB bands, roles and alpha for ``facts`` and ``request`` (InputError when impossible).

    ``holds_alpha(band)``: whether the band tagged alpha holds alpha values (0 and full
    opacity); asked only when a preset's guess and the file's tag disagree.
    """
    check_preset(facts.path, request.preset)
    alpha = alpha_band(facts, request, holds_alpha)
    data_bands = tuple(b for b in range(1, facts.count + 1) if b != alpha)
    if not data_bands:
        raise InputError("raster_only_alpha", field="raster", path=facts.path, band=alpha)
    roles = _roles(facts, request, alpha)
    return BandChoice(_rgb(facts, request, roles, data_bands), roles, alpha, data_bands)
