#!/usr/bin/env python3
"""Writes plugins.xml, a custom QGIS plugin repository that serves the plugin zip (make repo).

Add the URL of the published plugins.xml in QGIS (Plugins ▸ Manage and Install Plugins ▸
Settings ▸ Add…); the zip must be published at ``--url``/<zip name>. QGIS takes the plugin's id
from ``file_name`` up to its first dot, so the zip must be named ``paligemma_qgis.<version>.zip``
and hold the folder paligemma_qgis/: both are checked here. Dates come from SOURCE_DATE_EPOCH
(else the zip's metadata.txt is the only input): the same zip gives the same file.

Usage: scripts/plugin_repo.py --zip dist/paligemma_qgis.0.1.0.zip --url https://host/path --out dist/plugins.xml
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path


class RepoError(Exception):
    """One line that says why no plugins.xml was written."""


def zip_metadata(zip_path: Path) -> tuple[str, dict[str, str]]:
    """(the zip's top folder, its metadata.txt [general] as a dict)."""
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        tops = {n.split("/")[0] for n in names}
        if len(tops) != 1:
            raise RepoError(f"{zip_path.name}: one folder at the top of the zip, found {sorted(tops)}")
        (top,) = tops
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        parser.read_string(zf.read(f"{top}/metadata.txt").decode("utf-8"))
    return top, dict(parser["general"])


def plugins_xml(zip_path: Path, base_url: str, when: dt.datetime) -> bytes:
    """The repository's XML for one zip, as QGIS's plugin installer reads it."""
    top, meta = zip_metadata(zip_path)
    plugin_id = zip_path.name.partition(".")[0]
    if plugin_id != top:
        raise RepoError(
            f"{zip_path.name}: QGIS would install it as '{plugin_id}' but it holds the folder '{top}/' "
            f"(name the zip {top}.{meta.get('version')}.zip)"
        )
    root = ET.Element("plugins")
    plugin = ET.SubElement(root, "pyqgis_plugin", name=meta["name"], version=meta["version"])
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    fields = {
        "description": meta["description"],
        "about": meta.get("about", ""),
        "version": meta["version"],
        "trusted": "False",
        "qgis_minimum_version": meta["qgisMinimumVersion"],
        "qgis_maximum_version": meta.get("qgisMaximumVersion", ""),
        "homepage": meta.get("homepage", ""),
        "file_name": zip_path.name,
        "icon": "",
        "author_name": meta["author"],
        "download_url": f"{base_url.rstrip('/')}/{zip_path.name}",
        "uploaded_by": meta["author"],
        "create_date": stamp,
        "update_date": stamp,
        "experimental": meta.get("experimental", "False"),
        "deprecated": meta.get("deprecated", "False"),
        "tracker": meta.get("tracker", ""),
        "repository": meta.get("repository", ""),
        "tags": meta.get("tags", ""),
        "changelog": meta.get("changelog", ""),
        "category": meta.get("category", ""),
        "server": meta.get("server", "False"),
    }
    for tag, text in fields.items():
        ET.SubElement(plugin, tag).text = text
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def build_date() -> dt.datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
    return dt.datetime(1980, 1, 2, tzinfo=dt.timezone.utc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", required=True, type=Path, help="the plugin zip (make package)")
    parser.add_argument("--url", required=True, help="where the zip is published (its folder's URL)")
    parser.add_argument("--out", required=True, type=Path, help="plugins.xml to write")
    args = parser.parse_args(argv)
    try:
        data = plugins_xml(args.zip, args.url, build_date())
    except (RepoError, OSError, KeyError, zipfile.BadZipFile, configparser.Error) as exc:
        print(f"repo: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the file is published
    os.replace(tmp, args.out)
    print(f"repo: {args.out} serves {args.url.rstrip('/')}/{args.zip.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
