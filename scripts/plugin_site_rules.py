"""The upload rules of the official QGIS plugin repository (plugins.qgis.org), checked offline.

Written from the rules of its validator (qgis/QGIS-Django, qgis-app/plugins/validator.py): size,
paths, forbidden folders and .pyc files, the top folder's name, __init__.py, metadata.txt with its
mandatory fields, LICENSE, author. Not checked here: that the tracker/repository/homepage URLs
answer (the site sends them a request; this machine cannot reach them). Stdlib only.
"""

from __future__ import annotations

import configparser
import re
import zipfile
from pathlib import Path

MAX_UPLOAD_BYTES = 25_000_000
REQUIRED_METADATA = (
    "name",
    "description",
    "version",
    "qgisMinimumVersion",
    "author",
    "email",
    "about",
    "tracker",
    "repository",
)
FORBIDDEN_DIRS = ("__MACOSX", ".git", "__pycache__")
# The site's defaults for "not filled in" (Plugin Builder's template values).
FORBIDDEN_URLS = {"tracker": "http://bugs", "repository": "http://repo", "homepage": "http://homepage"}


def zip_problems(path: str | Path) -> list[str]:
    """Why the plugin site would refuse the zip at ``path`` ([] when it would take it)."""
    path = Path(path)
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        return [f"{path.name} is {path.stat().st_size / 1e6:.1f} MB (at most {MAX_UPLOAD_BYTES / 1e6:g} MB)"]
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return [f"{path.name} is not a zip"]
    with zf:
        names = zf.namelist()
        problems = [p for name in names for p in _name_problems(name)]
        bad = zf.testzip()
        if bad:
            problems.append(f"{bad}: bad CRC")
        if problems or not names:
            return problems or ["the zip is empty"]
        top = names[0].split("/")[0]
        if "/" not in names[0]:
            return ["no folder at the top of the zip"]
        if len({n.split("/")[0] for n in names}) > 1:
            problems.append("more than one folder at the top of the zip")
        if not top.isidentifier() or not re.fullmatch(r"[a-z_][a-z0-9_]*", top):
            problems.append(f"top folder {top!r}: a new plugin's must be a lower-case Python identifier")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{top}/{required}" not in names:
                problems.append(f"{top}/{required} is missing")
        if f"{top}/metadata.txt" in names:
            problems += metadata_problems(zf.read(f"{top}/metadata.txt"), top, names)
    return problems


def _name_problems(name: str) -> list[str]:
    problems = []
    if ".." in name or name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        problems.append(f"{name}: path information (.., /, \\ or a drive) is refused")
    if ".pyc" in name:
        problems.append(f"{name}: .pyc files are refused")
    parts = name.split("/")
    problems += [f"{name}: a {d} folder is refused" for d in FORBIDDEN_DIRS if d in parts]
    return problems


def metadata_problems(data: bytes, top: str, names: list[str]) -> list[str]:
    """The site's checks of metadata.txt (parsed as it parses it: case-sensitive keys, [general])."""
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(data.decode("utf-8"))
    except (UnicodeDecodeError, configparser.Error) as exc:
        return [f"metadata.txt does not parse: {exc}"]
    if not parser.has_section("general"):
        return ["metadata.txt has no [general] section"]
    meta = dict(parser.items("general"))
    problems = [f"metadata.txt lacks {key}" for key in REQUIRED_METADATA if not meta.get(key, "").strip()]
    for key, forbidden in FORBIDDEN_URLS.items():
        url = meta.get(key)
        if url is None and key == "homepage":
            continue
        if url == forbidden or not re.match(r"^[a-z][a-z0-9+.-]*://[^/\s]+", url or ""):
            problems.append(f"metadata.txt {key}={url!r} is not a URL")
    if "/" in meta.get("author", ""):
        problems.append("metadata.txt author holds a slash")
    icon = meta.get("icon", "").strip().removeprefix("./")
    if icon and f"{top}/{icon}" not in names:
        problems.append(f"metadata.txt names icon={icon}, which is not in the zip")
    return problems
