"""metadata.txt: what QGIS's plugin manager and the official repository (plugins.qgis.org) read."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
# Mandatory for upload to plugins.qgis.org (the repository's validator refuses a zip without them).
REQUIRED = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "tracker",
    "repository",
)


@pytest.fixture(scope="module")
def meta() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    with open(REPO / "metadata.txt", encoding="utf-8") as f:
        parser.read_file(f)
    assert parser.sections() == ["general"]
    return parser["general"]


@pytest.mark.parametrize("key", REQUIRED)
def test_required_field_present_and_not_empty(meta, key):
    assert meta.get(key, "").strip(), f"metadata.txt lacks {key}"


def test_versions(meta):
    import paligemma_qgis

    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert meta["version"] == paligemma_qgis.__version__
    assert re.fullmatch(r"3\.\d+", meta["qgisMinimumVersion"])
    # One code base for QGIS 3 (Qt5) and QGIS 4 (Qt6): without these QGIS 4 lists it as incompatible.
    assert meta["qgisMaximumVersion"] == "4.99"
    assert meta["supportsQt6"] == "True"


def test_urls_and_email(meta):
    for key in ("tracker", "repository", "homepage"):
        if key in meta:
            url = urlparse(meta[key])
            assert url.scheme in ("http", "https") and url.netloc, f"{key}={meta[key]}"
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", meta["email"])


def test_flags_and_icon(meta):
    for key in ("experimental", "deprecated"):
        assert meta.get(key, "False") in ("True", "False"), key
    assert meta.get("hasProcessingProvider", "no") in ("yes", "no")
    assert meta["hasProcessingProvider"] == "yes"  # qgis_process needs it to load the provider
    assert (REPO / meta["icon"]).is_file(), "icon named in metadata.txt is missing"
    assert meta.get("category", "Raster") in ("Raster", "Vector", "Database", "Web", "Plugins")
    assert len(meta["description"]) < 300 and "\n" not in meta["description"]


def test_qgis_parses_it_like_the_plugin_manager(meta, tmp_path):
    """qgis.utils.findPlugins reads metadata.txt with its own parser; name and flags must come through."""
    from qgis import utils

    folder = tmp_path / "paligemma_qgis"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "metadata.txt").write_bytes((REPO / "metadata.txt").read_bytes())
    found = dict(utils.findPlugins(str(tmp_path)))
    parser = found["paligemma_qgis"]
    assert parser is not None, "QGIS could not parse metadata.txt"
    assert parser.get("general", "name") == meta["name"]
    assert parser.get("general", "hasProcessingProvider") == "yes"
