"""The error codes of core/model and core/geometry: neutral words in core, the flags in the CLI's.

Every code renders in the neutral words and in the command line's, with no flag in the
neutral text and every option placeholder a real option. A few raises are checked end to end
(the error's code, field and both renderings) where a raise used to carry a flag.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from paligemma_qgis.cli.wording import cli_message, cli_wording
from paligemma_qgis.core.errors import ErrorInfo, InputError, placeholders, render
from paligemma_qgis.core.geometry import messages as geometry_messages
from paligemma_qgis.core.model import messages as model_messages

FLAG = re.compile(r"(?<![\w-])--[a-z]")
CODES = sorted({**model_messages.MESSAGES, **geometry_messages.MESSAGES})


@pytest.mark.parametrize("code", CODES)
def test_every_code_renders_neutral_and_in_the_cli(code: str) -> None:
    message = {**model_messages.MESSAGES, **geometry_messages.MESSAGES}[code]
    cli = cli_wording()
    remedies = message.remedy + cli.remedies.get(code, "")
    names = placeholders(message.problem) | placeholders(remedies)
    options = {n[4:] for n in names if n.startswith("opt_")}
    assert options <= set(cli.labels), f"{code}: no such option {options - set(cli.labels)}"
    params = {n: f"<{n}>" for n in names if n != "option" and not n.startswith("opt_")}
    info = ErrorInfo(code, params, "model" if "option" in names else None)
    neutral = render(info)
    assert not FLAG.search(message.problem + message.remedy), code
    assert not FLAG.search(neutral) and "{" not in neutral, neutral
    assert "{" not in render(info, cli)


def test_device_remedies_name_the_flag_only_in_the_cli() -> None:
    info = ErrorInfo(
        "gpu_memory", {"when": "with one chip per batch", "device": "cuda:0", "detail": "OOM"}, "device"
    )
    assert render(info).endswith("or set device to cpu")
    assert render(info, cli_wording()).endswith("or set --device to cpu")


def test_vae_missing_names_the_download_command_in_the_cli_only(tmp_path: Path) -> None:
    from paligemma_qgis.core.errors import WeightsError
    from paligemma_qgis.core.model.weights import DOWNLOAD_COMMAND, find_vae

    with pytest.raises(WeightsError) as caught:
        find_vae(tmp_path / "nope.npz")
    assert (caught.value.code, caught.value.field) == ("vae_missing", "vae")
    assert DOWNLOAD_COMMAND not in str(caught.value) and not FLAG.search(str(caught.value))
    assert DOWNLOAD_COMMAND in cli_message(caught.value) and "--vae FILE" in cli_message(caught.value)


def test_footprint_of_a_map_without_chips_or_raster_is_a_coded_error(tmp_path: Path) -> None:
    from paligemma_qgis.core.geometry.footprints import legacy_footprint

    with pytest.raises(InputError) as caught:
        legacy_footprint(tmp_path / "old.gpkg", None, {}, "", [])
    assert caught.value.code == "footprint_unknown"
    assert str(caught.value).startswith(f"{tmp_path / 'old.gpkg'}: no 'scenes' or 'chips' layer")


def test_footprint_without_the_raster_is_the_chips_with_a_note(tmp_path: Path) -> None:
    import shapely

    from paligemma_qgis.core.geometry.footprints import legacy_footprint

    chips = shapely.box(0, 0, 10, 10)
    notes: list[str] = []
    footprint, how = legacy_footprint(tmp_path / "old.gpkg", (chips, "EPSG:32633"), {}, "gone.tif", notes)
    assert footprint.equals(chips) and how == {"crs": "EPSG:32633"}
    assert notes == [
        f"{tmp_path / 'old.gpkg'}: footprint taken as the segmented chips (raster gone.tif not found): "
        "nodata inside them counts as observed land"
    ]


def test_an_output_crs_far_from_the_polygons_names_the_option() -> None:
    import geopandas as gpd
    import shapely

    from paligemma_qgis.core.errors import PaliGemmaQgisError
    from paligemma_qgis.core.geometry.vectorize import reproject_frame

    gdf = gpd.GeoDataFrame(geometry=[shapely.box(500000, 5000000, 501000, 5001000)], crs="EPSG:32633")
    with pytest.raises(PaliGemmaQgisError) as caught:
        reproject_frame(gdf, "EPSG:32760")  # UTM 60 S: the other side of the Earth
    assert (caught.value.code, caught.value.field) == ("out_crs_elsewhere", "out_crs")
    assert str(caught.value).startswith("out_crs EPSG:32760 is meant for")
    assert cli_message(caught.value).startswith("--out-crs EPSG:32760 is meant for")
