"""QGIS's proxy settings reach what the plugin starts: pip (the worker setup, from the hashed locks)
and the worker's downloads. A forward proxy on 127.0.0.1 is the only way to the (made-up) hosts."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest
from qgis.core import QgsNetworkAccessManager, QgsSettings

from paligemma_qgis.plugin.network import qgis_proxy_env
from paligemma_qgis.plugin.setup_plan import plan_setup
from paligemma_qgis.plugin.setup_tasks import run_steps, weights_steps
from paligemma_qgis.plugin.worker_env import venv_python, worker_env
from paligemma_qgis.plugin.worker_locks import LOCKS_DIR, Locks

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

INDEX = "http://index.paligemma.test"  # .test never resolves: only the proxy knows it
PIP_ARGS = ("--index-url", f"{INDEX}/simple", "--trusted-host", "index.paligemma.test")
USER, PASSWORD = "mapper", "p@ss:w/rd"


class ForwardProxy(http.server.ThreadingHTTPServer):
    """Answers absolute-URL GETs from ``pages`` ({url: bytes}), 404 otherwise; logs what it was asked."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.pages: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (url, Proxy-Authorization)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append((self.path, self.headers.get("Proxy-Authorization", "")))
        body = self.server.pages.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header(
            "Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream"
        )
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def proxy():
    server = ForwardProxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _set_qgis_proxy(values: dict | None) -> None:
    """What QGIS's Options ▸ Network page saves, then applies (setupDefaultProxyAndCache)."""
    settings = QgsSettings()
    settings.remove("proxy")
    for key, value in (values or {}).items():
        settings.setValue(f"proxy/{key}", value)
    QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()


@pytest.fixture
def qgis_proxy(proxy):
    _set_qgis_proxy(
        {"proxyEnabled": True, "proxyType": "HttpProxy", "proxyHost": "127.0.0.1",
         "proxyPort": str(proxy.server_address[1]), "proxyUser": USER, "proxyPassword": PASSWORD,
         "noProxyUrls": ["https://intranet.example.net/maps"]}
    )  # fmt: skip
    yield proxy
    _set_qgis_proxy(None)


def _proxy_url(proxy: ForwardProxy) -> str:
    return f"http://mapper:p%40ss%3Aw%2Frd@127.0.0.1:{proxy.server_address[1]}"


def test_qgis_proxy_becomes_the_childrens_proxy(qgis_proxy):
    url = _proxy_url(qgis_proxy)
    assert qgis_proxy_env() == {"HTTP_PROXY": url, "HTTPS_PROXY": url, "ALL_PROXY": url,
                                "NO_PROXY": "intranet.example.net"}  # fmt: skip
    env = worker_env({"https_proxy": "http://elsewhere:3128", "NO_PROXY": "*", "PATH": "/bin"})
    assert env["https_proxy"] == env["HTTPS_PROXY"] == url and env["http_proxy"] == url
    assert env["no_proxy"] == "intranet.example.net" and env["PATH"] == "/bin"


def test_system_or_no_proxy_leaves_the_environment_alone():
    base = {"HTTPS_PROXY": "http://corporate:3128", "PATH": "/bin"}
    _set_qgis_proxy({"proxyEnabled": True, "proxyType": "DefaultProxy"})
    try:
        assert qgis_proxy_env() == {} and worker_env(base)["HTTPS_PROXY"] == "http://corporate:3128"
        _set_qgis_proxy({"proxyEnabled": False, "proxyType": "HttpProxy", "proxyHost": "127.0.0.1"})
        assert qgis_proxy_env() == {} and worker_env(base)["HTTPS_PROXY"] == "http://corporate:3128"
    finally:
        _set_qgis_proxy(None)


def test_the_vae_download_goes_through_qgis_proxy(qgis_proxy, tmp_path):
    """The plugin's Download step (the worker's urllib): through the proxy with its credentials;
    what the proxy hands back is still checked against Google's sha256."""
    url = f"{INDEX}/big_vision/vae-oid.npz"
    qgis_proxy.pages[url] = b"not the codec"
    (step,) = weights_steps(sys.executable, ["--url", url, "--dest", str(tmp_path / "vae-oid.npz")])
    outcome = run_steps([step])
    assert outcome.status == "error"
    assert qgis_proxy.requests == [(url, "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())]
    assert "downloaded file has sha256" in "\n".join(outcome.output)  # the proxy's bytes, refused
    assert not (tmp_path / "vae-oid.npz").exists()


def _wheel(version: str, body: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel of the package pgq_probe."""
    name = f"pgq_probe-{version}-py3-none-any.whl"
    info = f"pgq_probe-{version}.dist-info"
    files = {
        "pgq_probe/__init__.py": body,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: pgq-probe\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={_b64(hashlib.sha256(text.encode()).digest())},{len(text)}"
        for path, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return name, data.getvalue()


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _serve_wheel(proxy: ForwardProxy, name: str, data: bytes) -> None:
    link = f"{INDEX}/files/{name}"
    proxy.pages[link] = data
    page = proxy.pages.get(f"{INDEX}/simple/pgq-probe/", b"<html><body>\n")
    proxy.pages[f"{INDEX}/simple/pgq-probe/"] = page + f'<a href="{link}">{name}</a>\n'.encode()


def test_worker_setup_installs_the_lock_through_qgis_proxy_and_refuses_a_changed_file(
    qgis_proxy, tmp_path, monkeypatch
):
    """The real setup plan: a venv from this Python, then pip --require-hashes --no-deps -r the lock,
    through QGIS's proxy. A file that is not the locked one (here: the proxy changes it) fails."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no find-links, index or constraint of this machine
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    good_name, good = _wheel("1.0", "VALUE = 'locked'\n")
    _serve_wheel(qgis_proxy, good_name, good)
    locks = tmp_path / "locks"
    shutil.copytree(LOCKS_DIR, locks)
    (locks / "worker.txt").write_text(
        "# Python >= 3.11\npgq-probe==1.0 \\\n    --hash=sha256:" + hashlib.sha256(good).hexdigest() + "\n"
    )
    probe = {"python": sys.executable, "python_version": "3.11.2", "missing": {"geo": ["rasterio"]}}
    plan = plan_setup(probe, "water-index", "QGIS python", venv_dir=tmp_path / "venv", base_python=sys.executable,
                      pip_args=PIP_ARGS, locks=Locks(locks))  # fmt: skip
    outcome = run_steps(plan.steps)
    assert outcome.ok, "\n".join(outcome.output)
    python = str(venv_python(tmp_path / "venv"))
    check = subprocess.run(
        [python, "-c", "import pgq_probe; print(pgq_probe.VALUE)"], capture_output=True, text=True
    )
    assert check.stdout.strip() == "locked", check.stderr
    urls = [url for url, _ in qgis_proxy.requests]
    assert f"{INDEX}/simple/pgq-probe/" in urls and f"{INDEX}/files/{good_name}" in urls
    assert all(auth.startswith("Basic ") for _, auth in qgis_proxy.requests)

    # 1.1 is locked with the hash of the file its authors published; the proxy hands out another.
    published_name, published = _wheel("1.1", "VALUE = 'published'\n")
    _serve_wheel(qgis_proxy, published_name, _wheel("1.1", "import os; VALUE = 'planted'\n")[1])
    (locks / "worker.txt").write_text(
        "# Python >= 3.11\npgq-probe==1.1 \\\n    --hash=sha256:"
        + hashlib.sha256(published).hexdigest()
        + "\n"
    )
    probe = {"python": python, "python_version": "3.11.2", "missing": {"geo": ["pgq_probe"]}}
    plan = plan_setup(probe, "water-index", "managed venv", pip_args=PIP_ARGS, locks=Locks(locks))  # fmt: skip
    outcome = run_steps(plan.steps)
    assert outcome.status == "error" and "Install the geospatial packages failed" in outcome.message
    assert "DO NOT MATCH THE HASHES" in "\n".join(outcome.output)
    check = subprocess.run(
        [python, "-c", "import pgq_probe; print(pgq_probe.VALUE)"], capture_output=True, text=True
    )
    assert check.stdout.strip() == "locked"  # the planted file never got in
