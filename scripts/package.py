#!/usr/bin/env python3
"""Builds dist/paligemma_qgis.<VERSION>.zip, the plugin users install ("Install from ZIP", a custom
repository's plugins.xml, or plugins.qgis.org), from the files git tracks and nothing else.

QGIS names an installed plugin after the zip up to its first dot, so the zip is
``paligemma_qgis.<version>.zip`` (``paligemma_qgis-0.1.0.zip`` would install as ``paligemma_qgis-0``).

Layout: one top folder paligemma_qgis/ = the package's tracked files (tests, caches and hidden
files never) + metadata.txt + the icon it names + LICENSE + requirements-worker.txt /
requirements-model.txt / requirements-region.txt (requirements.in's sections, by name) + locks/
(the hashed lock files the plugin installs from). Refused: an untracked checkout, a tracked file
that is not UTF-8 text (binaries: the plugin site refuses them and they cannot be reviewed), a
tracked file missing on disk, and anything the plugin site's upload validator would refuse
(plugin_site_rules.py). Same sources, same bytes: fixed timestamps and order; written to a temp
file and moved into place.

Usage: scripts/package.py VERSION [DIST_DIR]     (make package passes metadata.txt's version)
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_site_rules import zip_problems  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAME = "paligemma_qgis"
SECTIONS = {
    "worker": "requirements-worker.txt",
    "model": "requirements-model.txt",
    "region": "requirements-region.txt",
}
ZIP_TIME = (1980, 1, 2, 0, 0, 0)


class PackageError(Exception):
    """One line that says why no zip was written."""


def zip_name(version: str) -> str:
    return f"{NAME}.{version}.zip"


def tracked_files(root: Path = REPO) -> list[str]:
    """Every file git tracks in ``root`` (paths relative to it, '/'-separated)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True, check=False
        )
    except OSError as exc:
        raise PackageError(
            f"cannot run git ({exc.strerror or exc}): the zip is built from git's tracked files"
        ) from None
    if proc.returncode != 0:
        raise PackageError(f"{root} is not a git checkout: the zip is built from git's tracked files only")
    return sorted(p for p in proc.stdout.decode("utf-8").split("\0") if p)


def shipped(path: str) -> bool:
    """Whether a tracked file under the package goes into the zip: no tests, caches or hidden files."""
    parts = path.split("/")
    name = parts[-1]
    if any(part.startswith(".") or part in ("__pycache__", "tests") for part in parts):
        return False
    return not (
        name.endswith((".pyc", ".pyo", ".orig", ".rej"))
        or name.startswith("test_")
        or name.endswith("_test.py")
    )


def read_text_file(path: Path, shown: str) -> bytes:
    """The bytes of a file that must be text (UTF-8, no NUL); PackageError otherwise."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageError(f"{shown} is not UTF-8 text: binary files are never shipped") from None
    if b"\0" in data:
        raise PackageError(f"{shown} holds NUL bytes: binary files are never shipped")
    return data


def section(name: str, text: str) -> str:
    """The requirement lines under ``# name:`` in requirements.in."""
    lines, on = [], False
    for line in text.splitlines():
        if re.match(r"^# [a-z ]+:", line):
            on = line.startswith(f"# {name}:")
        elif on and line.split("#")[0].strip():
            lines.append(line)
    if not lines:
        raise PackageError(f"requirements.in has no '# {name}:' section (for {SECTIONS[name]})")
    return "\n".join(lines) + "\n"


def read_metadata(root: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string((root / "metadata.txt").read_text(encoding="utf-8"))
    return parser["general"]


def contents(version: str, root: Path = REPO) -> dict[str, bytes]:
    """{path in the zip: bytes} of the plugin, after every check but the plugin site's."""
    meta = read_metadata(root)
    if meta.get("version") != version:
        raise PackageError(f"version {version} does not match metadata.txt (version={meta.get('version')})")
    init = (root / NAME / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "(.*)"', init, re.MULTILINE)
    if not match or match.group(1) != version:
        found = match.group(1) if match else "none"
        raise PackageError(f"version {version} does not match {NAME}/__init__.py (__version__ = {found})")
    tracked = tracked_files(root)
    icon = meta.get("icon", "").strip()
    wanted = {p: f"{NAME}/{p[len(NAME) + 1 :]}" for p in tracked if p.startswith(f"{NAME}/") and shipped(p)}
    wanted["metadata.txt"] = f"{NAME}/metadata.txt"
    wanted["LICENSE"] = f"{NAME}/LICENSE"
    if icon:
        wanted[icon] = f"{NAME}/{icon}"
    files: dict[str, bytes] = {}
    for source, target in wanted.items():
        if source not in tracked:
            raise PackageError(
                f"{source} is not tracked by git: commit it (the zip holds tracked files only)"
            )
        if not (root / source).is_file():
            raise PackageError(f"{source} is tracked but missing on disk")
        files[target] = read_text_file(root / source, source)
    requirements = (root / "requirements.in").read_text(encoding="utf-8")
    for group, name in SECTIONS.items():
        files[f"{NAME}/{name}"] = section(group, requirements).encode("utf-8")
    if not any(p.startswith(f"{NAME}/locks/") for p in files):
        raise PackageError(f"{NAME}/locks/ holds no tracked lock file: run `make lock` and commit them")
    return files


def write_zip(files: dict[str, bytes], dest: Path) -> None:
    """A reproducible zip (fixed time, order and modes), written to a temp file then moved into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o100644 << 16
                info.create_system = 3  # Unix, whoever builds it
                zf.writestr(info, files[name])
        problems = zip_problems(tmp)
        if problems:
            raise PackageError("the plugin site would refuse the zip: " + "; ".join(problems))
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the zip is published
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def build(version: str, dist: Path, root: Path = REPO) -> Path:
    dest = dist / zip_name(version)
    write_zip(contents(version, root), dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: scripts/package.py VERSION [DIST_DIR]", file=sys.stderr)
        return 2
    dist = Path(args[1]) if len(args) == 2 else REPO / "dist"
    try:
        path = build(args[0], dist)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(path) as zf:
        count = len(zf.namelist())
    print(f"package: {path} ({path.stat().st_size / 1e6:.1f} MB, {count} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
