"""Band resolution without a raster: what the file says + what the user asked -> RGB, roles, alpha.

Each case is one row of ``CASES``: the file's facts (band count, descriptions, the band it
tags alpha, and whether that band's values look like alpha), the request (bands, preset,
band roles by number) and either the decision (RGB bands, roles, alpha band) or the error
(its code and field). Add a case by adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.inputs.band_choice import (
    BandFacts,
    BandRequest,
    counts_text,
    parse_bands,
    resolve_bands,
)

S2 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
NAMED = ("Red", "Green", "Blue", "Near Infrared", "SWIR 1")


@dataclass(frozen=True)
class Case:
    id: str
    count: int
    descriptions: tuple[str | None, ...] = ()
    alpha_tag: int | None = None
    alpha_values: bool | None = None  # what the tagged band holds; None: it must not be looked at
    bands: tuple[int, ...] | None = None
    preset: str | None = None
    roles: dict[str, int] = field(default_factory=dict)
    rgb: tuple[int, int, int] | None = None  # expected ...
    expect_roles: dict[str, int] = field(default_factory=dict)
    alpha: int | None = None
    error: str = ""  # ... or the error's code
    error_field: str | None = None


NAIP_ROLES = {"red": 1, "green": 2, "blue": 3, "nir": 4}

CASES = [
    # ---------------------------------------------------------------- RGB and roles
    Case("plain-4-bands", 4, rgb=(1, 2, 3)),
    Case("naip", 4, preset="naip", rgb=(1, 2, 3), expect_roles=NAIP_ROLES),
    Case("bands-and-nir", 4, bands=(3, 2, 1), roles={"nir": 4}, rgb=(3, 2, 1), expect_roles={"nir": 4}),
    Case("one-band-is-grey", 4, bands=(4,), rgb=(4, 4, 4)),
    Case(
        "override-beats-preset",
        4,
        bands=(4, 1, 2),
        preset="naip",
        roles={"green": 1},
        rgb=(4, 1, 2),
        expect_roles={**NAIP_ROLES, "green": 1},
    ),
    Case(
        "described-bands",
        5,
        descriptions=NAMED,
        rgb=(1, 2, 3),
        expect_roles={"red": 1, "green": 2, "blue": 3, "nir": 4, "swir": 5},
    ),
    Case(
        "descriptions-beat-preset-overrides-beat-both",
        5,
        descriptions=NAMED,
        preset="landsat89",
        roles={"swir": 4},
        rgb=(4, 3, 2),  # the preset's RGB still wins over described red/green/blue
        expect_roles={"red": 1, "green": 2, "blue": 3, "nir": 4, "swir": 4},
    ),
    Case(
        "described-rgb-order",
        4,
        descriptions=("blue", "green", "red", "nir"),
        rgb=(3, 2, 1),
        expect_roles={"blue": 1, "green": 2, "red": 3, "nir": 4},
    ),
    Case(
        "sentinel2-l1c",
        13,
        preset="sentinel2",
        rgb=(4, 3, 2),
        expect_roles={"red": 4, "green": 3, "blue": 2, "nir": 8, "swir": 12},
    ),
    Case(
        "sentinel2-l2a-has-no-b10",
        12,
        preset="sentinel2",
        rgb=(4, 3, 2),
        expect_roles={"red": 4, "green": 3, "blue": 2, "nir": 8, "swir": 11},
    ),
    Case(
        "s2-codes-known-by-b8a",
        13,
        descriptions=S2,
        rgb=(4, 3, 2),
        expect_roles={"blue": 2, "green": 3, "red": 4, "nir": 8, "swir": 12},
    ),
    Case(
        "preset-count-unknown-but-described",
        4,
        descriptions=("red", "green", "blue", "nir"),
        preset="sentinel2",
        rgb=(4, 3, 2),
        expect_roles={"red": 1, "green": 2, "blue": 3, "nir": 4},
    ),
    # ---------------------------------------------------------------- alpha
    Case("rgba-alpha", 4, alpha_tag=4, rgb=(1, 2, 3), alpha=4),
    Case("rgba-preset-alpha-values", 4, alpha_tag=4, alpha_values=True, preset="naip", rgb=(1, 2, 3),
         expect_roles={"red": 1, "green": 2, "blue": 3}, alpha=4),
    Case("nir-mistagged-alpha", 4, alpha_tag=4, alpha_values=False, preset="naip", rgb=(1, 2, 3),
         expect_roles=NAIP_ROLES),
    Case("alpha-asked-for-is-data", 4, alpha_tag=4, roles={"nir": 4}, rgb=(1, 2, 3), expect_roles={"nir": 4}),
    Case("alpha-in-bands-is-data", 4, alpha_tag=4, bands=(4,), rgb=(4, 4, 4)),
    Case("grey-and-alpha", 2, alpha_tag=2, rgb=(1, 1, 1), alpha=2),
    Case("alpha-first", 4, alpha_tag=1, rgb=(2, 3, 4), alpha=1),
    # ---------------------------------------------------------------- errors
    Case("only-alpha", 1, alpha_tag=1, error="raster_only_alpha", error_field="raster"),
    Case("unknown-preset", 4, preset="modis", error="preset_unknown", error_field="preset"),
    Case("preset-band-count", 4, preset="sentinel2", error="preset_mismatch", error_field="preset"),
    Case("landsat-band-count", 5, preset="landsat89", error="preset_mismatch", error_field="preset"),
    Case("preset-rgb-missing", 2, preset="naip", error="preset_rgb_missing", error_field="preset"),
    Case("rgb-band-missing", 4, bands=(1, 2, 9), error="band_out_of_range", error_field="bands"),
    Case("role-band-missing", 4, roles={"nir": 7}, error="band_out_of_range", error_field="nir"),
    Case("role-band-zero", 4, roles={"green": 0}, error="band_out_of_range", error_field="green"),
]  # fmt: skip


def _holds_alpha(case: Case):
    def holds(band: int) -> bool:
        assert case.alpha_values is not None, f"band {band}'s values were looked at"
        assert band == case.alpha_tag
        return case.alpha_values

    return holds


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_band_choice(case: Case) -> None:
    facts = BandFacts("x.tif", case.count, case.descriptions or (None,) * case.count, case.alpha_tag)
    request = BandRequest(case.bands, case.preset, case.roles)
    if case.error:
        with pytest.raises(InputError) as info:
            resolve_bands(facts, request, _holds_alpha(case))
        assert (info.value.code, info.value.field) == (case.error, case.error_field)
        assert str(info.value).startswith("x.tif: ")
        return
    choice = resolve_bands(facts, request, _holds_alpha(case))
    assert choice.rgb == case.rgb
    assert dict(choice.roles) == case.expect_roles
    assert choice.alpha == case.alpha
    assert choice.data_bands == tuple(b for b in range(1, case.count + 1) if b != case.alpha)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("3,2,1", (3, 2, 1)),
        ("3, 2, 1", (3, 2, 1)),
        ([4], (4,)),
        (None, None),
        ("", None),
        ("1,2", "band_list_count"),
        ("a,b,c", "band_list_bad"),
        ((1, 2, 3, 4), "band_list_count"),
    ],
)
def test_parse_bands(value, expected) -> None:
    if isinstance(expected, str):
        with pytest.raises(InputError) as info:
            parse_bands(value, path="x.tif")
        assert (info.value.code, info.value.field) == (expected, "bands")
    else:
        assert parse_bands(value) == expected


def test_errors_read_as_before() -> None:
    """The words users and scripts know, in the neutral rendering."""
    facts = BandFacts("x.tif", 4)
    cases = [
        (BandRequest(preset="sentinel2"), "x.tif: preset 'sentinel2' expects 12 or 13 bands but the raster has 4; "
         "use bands and green/nir/swir instead"),
        (BandRequest(bands=(1, 2, 9)), "x.tif: RGB band 9 does not exist (the raster has 4 bands); choose a band from 1 to 4 for bands"),
        (BandRequest(preset="modis"), "x.tif: unknown preset 'modis'; choose one of sentinel2, landsat89, naip"),
    ]  # fmt: skip
    for request, text in cases:
        with pytest.raises(InputError) as info:
            resolve_bands(facts, request)
        assert str(info.value) == text
    with pytest.raises(InputError) as info:
        resolve_bands(BandFacts("x.tif", 2), BandRequest(preset="naip"))
    assert str(info.value).startswith("x.tif: preset 'naip' expects bands (1, 2, 3) but the raster has 2;")
    assert counts_text((6, 7, 8, 9, 10, 11, 12)) == "6 to 12" and counts_text((12, 13)) == "12 or 13"
