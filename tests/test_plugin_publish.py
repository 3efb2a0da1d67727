"""Publishing the plugin: only tracked text files are packed, the zip passes the plugin site's upload
rules, and a custom repository's plugins.xml installs it under its own id with QGIS's own installer."""

from __future__ import annotations

import configparser
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from waiting import wait_until

# End to end (git, the zip build, QGIS installing it): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "paligemma_qgis"
sys.path.insert(0, str(REPO / "scripts"))
from plugin_site_rules import zip_problems  # noqa: E402


def _version() -> str:
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(REPO / "metadata.txt", encoding="utf-8")
    return meta["general"]["version"]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A git checkout holding this repository's tracked files (as they are on disk), staged."""
    root = tmp_path / "checkout"
    for rel in _git(REPO, "ls-files", "-z").split("\0"):
        if rel and (REPO / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    _git(root.parent, "init", "-q", str(root))
    _git(root, "add", "-A")
    return root


def _package(root: Path, dist: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(root / "scripts" / "package.sh"), _version(), str(dist)], capture_output=True, text=True
    )


def test_a_checkout_with_stray_files_packs_only_tracked_ones(checkout, tmp_path, plugin_zip):
    pkg = checkout / PACKAGE
    (pkg / "stray.py").write_text("raise SystemExit('not ours')\n")  # untracked
    (pkg / ".secrets").mkdir()
    (pkg / ".secrets" / "token.txt").write_text("hf_xxx\n")
    (pkg / "core" / "notes.orig").write_text("merge leftovers\n")
    (pkg / "plugin" / "__pycache__").mkdir(exist_ok=True)
    (pkg / "plugin" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00\x01")
    (pkg / "weights.npz").write_bytes(b"PK\x03\x04\x00binary")
    proc = _package(checkout, tmp_path / "dist")
    assert proc.returncode == 0, proc.stderr
    built = tmp_path / "dist" / plugin_zip.name
    assert zipfile.ZipFile(built).namelist() == zipfile.ZipFile(plugin_zip).namelist()
    # A tracked hidden file is not shipped either; a tracked one in tests/ neither.
    (pkg / ".gitkeep").write_text("")
    _git(checkout, "add", "-f", f"{PACKAGE}/.gitkeep")
    assert _package(checkout, tmp_path / "dist2").returncode == 0
    assert f"{PACKAGE}/.gitkeep" not in zipfile.ZipFile(tmp_path / "dist2" / plugin_zip.name).namelist()


def test_a_tracked_binary_fails_the_build_and_leaves_nothing(checkout, tmp_path):
    logo = checkout / PACKAGE / "resources" / "logo.png"
    logo.parent.mkdir(exist_ok=True)
    logo.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _git(checkout, "add", "-f", str(logo.relative_to(checkout)))
    proc = _package(checkout, tmp_path / "dist")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"package: {PACKAGE}/resources/logo.png is not UTF-8 text: binary files are never shipped"
    )
    assert not (tmp_path / "dist").exists() or list((tmp_path / "dist").iterdir()) == []


def test_outside_a_git_checkout_says_so(checkout, tmp_path):
    shutil.rmtree(checkout / ".git")
    proc = _package(checkout, tmp_path / "dist")
    assert proc.returncode == 1 and "is not a git checkout" in proc.stderr


def test_the_zip_passes_the_plugin_site_upload_rules(plugin_zip):
    assert zip_problems(plugin_zip) == []
    with zipfile.ZipFile(plugin_zip) as zf:
        meta = configparser.ConfigParser()
        meta.optionxform = str
        meta.read_string(zf.read(f"{PACKAGE}/metadata.txt").decode("utf-8"))
        assert zf.read(f"{PACKAGE}/LICENSE").startswith(b"                    GNU GENERAL PUBLIC LICENSE")
    general = meta["general"]
    # A real-looking address (no reserved example domain) and the project's own links.
    assert not re.search(r"@(example\.(org|com|net)|[^@]*\.(invalid|test|localhost))$", general["email"])
    for key in ("homepage", "tracker", "repository"):
        assert general[key].startswith("https://github.com/paligemma-qgis/paligemma_qgis")
    assert general["changelog"].strip().startswith(general["version"])
    about = general["about"]
    for download in (
        "100 MB",
        "torch",
        "transformers",
        "vae-oid.npz",
        "8.5 MB",
        "Hugging Face",
        "6 GB",
        "proxy",
    ):
        assert download in about, f"about= does not name {download!r}"


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda files: files.update({"__MACOSX/._x": b""}), "__MACOSX folder is refused"),
        (lambda files: files.update({f"{PACKAGE}/core/x.pyc": b""}), ".pyc files are refused"),
        (lambda files: files.pop(f"{PACKAGE}/LICENSE"), f"{PACKAGE}/LICENSE is missing"),
        (
            lambda files: files.update(
                {
                    f"{PACKAGE}/metadata.txt": files[f"{PACKAGE}/metadata.txt"].replace(
                        b"\nemail=", b"\n#email="
                    )
                }
            ),
            "metadata.txt lacks email",
        ),
        (
            lambda files: files.update(
                {f"{PACKAGE}/metadata.txt": files[f"{PACKAGE}/metadata.txt"] + b"tracker=http://bugs\n"}
            ),
            "does not parse",  # a key given twice
        ),
    ],
)
def test_the_rules_catch_what_the_site_refuses(plugin_zip, tmp_path, mutate, problem):
    with zipfile.ZipFile(plugin_zip) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    mutate(files)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for name in sorted(files, key=lambda n: not n.startswith(PACKAGE)):
            zf.writestr(name, files[name])
    assert any(problem in p for p in zip_problems(bad)), zip_problems(bad)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/site; yields (folder, base URL)."""
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_make_repo_plugins_xml_installs_under_the_plugin_id(
    plugin_zip, served, tmp_path, qgis_iface, monkeypatch
):
    """QGIS's own plugin installer reads the plugins.xml, downloads the zip and unpacks it into the
    profile's plugins folder under the id it takes from the zip name, which is the package's."""
    import qgis.utils
    from qgis.core import QgsApplication

    installer = Path(QgsApplication.pkgDataPath()) / "python"  # QGIS's own python/ (pyplugin_installer)
    if not (installer / "pyplugin_installer").is_dir():
        pytest.skip(f"QGIS's plugin installer is not in {installer}")
    monkeypatch.syspath_prepend(str(installer))
    from pyplugin_installer import installer_data as data
    from pyplugin_installer.qgsplugininstallerinstallingdialog import QgsPluginInstallerInstallingDialog

    site, url = served
    shutil.copy(plugin_zip, site / plugin_zip.name)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plugin_repo.py"), "--zip", str(site / plugin_zip.name),
         "--url", url, "--out", str(site / "plugins.xml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    key = "paligemma test repository"
    monkeypatch.setitem(
        data.repositories.mRepositories,
        key,
        {"url": f"{url}/plugins.xml", "authcfg": "", "enabled": True, "valid": True, "Relay": data.Relay(key),
         "xmlData": None, "state": data.Repositories.STATE_DISABLED, "error": ""},
    )  # fmt: skip
    monkeypatch.setattr(data.plugins, "repoCache", {})
    data.repositories.requestFetching(key)
    wait_until(lambda: not data.repositories.fetchingInProgress(), what="plugins.xml")
    assert data.repositories.mRepositories[key]["state"] == data.Repositories.STATE_LOADED
    (plugin,) = data.plugins.repoCache[key]
    assert plugin["id"] == PACKAGE and plugin["version_available"] == _version()
    assert plugin["download_url"] == f"{url}/{plugin_zip.name}" and plugin["experimental"] is True

    home = tmp_path / "profile" / "python" / "plugins"
    monkeypatch.setattr(qgis.utils, "home_plugin_path", str(home), raising=False)  # set by QGIS's GUI
    dialog = QgsPluginInstallerInstallingDialog(None, plugin, stable=False)  # experimental=True in metadata
    wait_until(
        lambda: (home / plugin["id"] / "metadata.txt").is_file() or dialog.result(), what="the install"
    )
    assert dialog.result() == ""
    assert (home / PACKAGE / "__init__.py").is_file() and [p.name for p in home.iterdir()] == [PACKAGE]


def test_plugin_repo_refuses_a_zip_qgis_would_install_under_another_id(plugin_zip, tmp_path):
    wrong = tmp_path / f"{PACKAGE}-{_version()}.zip"  # the old name: QGIS took "paligemma_qgis-0"
    shutil.copy(plugin_zip, wrong)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plugin_repo.py"), "--zip", str(wrong), "--url", "https://h/x",
         "--out", str(tmp_path / "plugins.xml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1 and not (tmp_path / "plugins.xml").exists()
    assert f"QGIS would install it as '{PACKAGE}-0'" in proc.stderr
