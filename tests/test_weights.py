"""Finding, verifying and downloading vae-oid.npz (a local HTTP server stands in for Google)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from synthetic_vae import random_vae_arrays, write_vae_npz

from paligemma_qgis.cli import main
from paligemma_qgis.cli.weights import add_vae_arguments, codec_from_args
from paligemma_qgis.cli.wording import cli_message
from paligemma_qgis.core.errors import OutputExistsError, WeightsError
from paligemma_qgis.core.model import weights as w


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """Point the user cache at a temp folder and clear the env var."""
    path = tmp_path / "cache" / "vae-oid.npz"
    monkeypatch.setattr(w, "default_vae_path", lambda: path)
    monkeypatch.delenv(w.VAE_ENV, raising=False)
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        if self.path == "/broken":  # announces more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    payload = write_vae_npz(tmp_path_factory.mktemp("srv") / "v.npz", random_vae_arrays(3)).read_bytes()
    _Handler.files = {"/vae-oid.npz": payload}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, payload, hashlib.sha256(payload).hexdigest()
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/vae-oid.npz"


# ------------------------------------------------------------------ find


def test_find_order(cache, tmp_path, monkeypatch, vae_npz):
    with pytest.raises(WeightsError) as err:
        w.find_vae()
    msg = str(err.value)
    assert (err.value.code, err.value.field) == ("vae_missing", "vae")
    assert str(cache) in msg and w.VAE_URLS[0] in msg and w.VAE_ENV in msg and "--vae" not in msg
    assert w.DOWNLOAD_COMMAND in cli_message(err.value) and "--vae FILE" in cli_message(err.value)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"cached")
    assert w.find_vae() == cache
    env_file = tmp_path / "env.npz"
    env_file.write_bytes(b"env")
    monkeypatch.setenv(w.VAE_ENV, str(env_file))
    assert w.find_vae() == env_file
    assert w.find_vae(vae_npz) == vae_npz
    assert w.find_vae(str(vae_npz)) == vae_npz


def test_find_refuses_dangling_explicit_and_env(cache, tmp_path, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"cached")
    with pytest.raises(WeightsError, match=r"nope\.npz \(given explicitly\)"):
        w.find_vae(tmp_path / "nope.npz")
    monkeypatch.setenv(w.VAE_ENV, str(tmp_path / "gone.npz"))
    with pytest.raises(WeightsError, match=r"gone\.npz \(from \$PALIGEMMA_QGIS_VAE\)"):
        w.find_vae()


def test_default_cache_dir_is_platformdirs():
    from platformdirs import user_cache_dir

    assert w.default_vae_path() == Path(user_cache_dir("paligemma_qgis")) / "vae-oid.npz"


# ------------------------------------------------------------------ checksums


def test_checksum_refusal_and_custom(vae_npz):
    digest = hashlib.sha256(vae_npz.read_bytes()).hexdigest()
    with pytest.raises(WeightsError) as err:
        w.load_vae_arrays(vae_npz)
    msg = str(err.value)
    assert digest in msg and w.VAE_SHA256 in msg and "set allow_custom_vae" in msg and str(vae_npz) in msg
    assert "--allow-custom-vae" in cli_message(err.value)
    arrays = w.load_vae_arrays(vae_npz, allow_custom_vae=True)
    assert set(arrays) == set(w.VAE_SHAPES) and all(a.dtype == np.float32 for a in arrays.values())
    assert w.check_checksum(vae_npz, allow_custom_vae=True) == digest


def test_matching_checksum_is_accepted(vae_npz, monkeypatch):
    monkeypatch.setattr(w, "VAE_SHA256", hashlib.sha256(vae_npz.read_bytes()).hexdigest())
    assert len(w.load_vae_arrays(vae_npz)) == 49


def test_nan_weights_refused(tmp_path):
    a = random_vae_arrays(0)
    a["decoder.0.bias"][3] = np.nan
    path = write_vae_npz(tmp_path / "nan.npz", a)
    with pytest.raises(WeightsError, match=r"nan\.npz: array decoder\.0\.bias holds NaN"):
        w.load_vae_arrays(path, allow_custom_vae=True)


# ------------------------------------------------------------------ download


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_from_url(server, tmp_path):
    base, payload, digest = server
    dest = tmp_path / "sub" / "vae-oid.npz"
    got = w.download_vae(dest, url=f"{base}/vae-oid.npz", sha256=digest, progress=False)
    assert got == dest and dest.read_bytes() == payload
    assert _leftovers(dest.parent) == ["vae-oid.npz"]
    assert dest.stat().st_mode & 0o777 == 0o644  # readable by the QGIS worker of another user
    # a folder as dest gets the standard name; an up-to-date file is kept as is
    assert w.download_vae(dest.parent, url=f"{base}/missing", sha256=digest, progress=False) == dest


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    base, _, _ = server
    with pytest.raises(WeightsError) as err:
        w.download_vae(tmp_path / "vae-oid.npz", url=f"{base}/vae-oid.npz", progress=False)
    assert w.VAE_SHA256 in str(err.value)
    assert _leftovers(tmp_path) == []


def test_download_broken_connection_leaves_nothing(server, tmp_path):
    base, _, _ = server
    with pytest.raises(WeightsError, match="could not download"):
        w.download_vae(tmp_path / "vae-oid.npz", url=f"{base}/broken", progress=False, verify=False)
    assert _leftovers(tmp_path) == []


def test_download_falls_back_to_second_url(server, tmp_path, monkeypatch):
    base, payload, digest = server
    monkeypatch.setattr(w, "VAE_URLS", (f"{base}/missing", f"{base}/vae-oid.npz"))
    dest = w.download_vae(tmp_path / "v.npz", sha256=digest, progress=False)
    assert dest.read_bytes() == payload


def test_offline_message(tmp_path, monkeypatch):
    bad = _closed_port_url()
    monkeypatch.setattr(w, "VAE_URLS", (bad, bad.replace("vae-oid", "other")))
    dest = tmp_path / "vae-oid.npz"
    with pytest.raises(WeightsError) as err:
        w.download_vae(dest, progress=False, timeout=5)
    msg = str(err.value)
    assert "offline" in msg and str(dest) in msg and bad in msg and w.VAE_ENV in msg
    assert _leftovers(tmp_path) == []


def test_existing_file_refused_unless_force(server, tmp_path):
    base, payload, digest = server
    dest = tmp_path / "vae-oid.npz"
    dest.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="exists with another checksum; set force") as err:
        w.download_vae(dest, url=f"{base}/vae-oid.npz", sha256=digest, progress=False)
    assert cli_message(err.value).endswith("pass --force to replace it")
    assert dest.read_bytes() == b"old"
    w.download_vae(dest, url=f"{base}/vae-oid.npz", sha256=digest, progress=False, force=True)
    assert dest.read_bytes() == payload


# ------------------------------------------------------------------ CLI


def test_cli_where(cache, capsys, monkeypatch, vae_npz):
    assert main(["weights", "where"]) == 1
    out = capsys.readouterr().out
    assert str(cache) in out and "Not found" in out
    monkeypatch.setenv(w.VAE_ENV, str(vae_npz))
    assert main(["weights", "where"]) == 0
    assert f"Found: {vae_npz}" in capsys.readouterr().out


def test_cli_verify(vae_npz, capsys, tmp_path):
    assert main(["weights", "verify", str(vae_npz)]) == 1
    assert w.VAE_SHA256 in capsys.readouterr().err
    assert main(["weights", "verify", str(vae_npz), "--allow-custom-vae"]) == 0
    assert "custom VAE" in capsys.readouterr().out
    broken = tmp_path / "broken.npz"
    broken.write_bytes(vae_npz.read_bytes()[:1000])
    assert main(["weights", "verify", str(broken)]) == 1
    assert "broken.npz" in capsys.readouterr().err


def test_cli_download(server, tmp_path, capsys, monkeypatch):
    base, payload, digest = server
    dest = tmp_path / "v.npz"
    assert main(["weights", "download", "--dest", str(dest), "--url", f"{base}/vae-oid.npz", "--quiet"]) == 1
    assert "expected " + w.VAE_SHA256 in capsys.readouterr().err and not dest.exists()
    monkeypatch.setattr(w, "VAE_SHA256", digest)
    args = ["weights", "download", "--dest", str(dest), "--url", f"{base}/vae-oid.npz", "--quiet"]
    assert main(args) == 0 and dest.read_bytes() == payload
    dest.write_bytes(b"other")
    assert main(args) == 1 and "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0 and dest.read_bytes() == payload


def test_add_vae_arguments_and_codec_from_args(vae_npz, cache):
    import argparse

    parser = argparse.ArgumentParser()
    add_vae_arguments(parser)
    args = parser.parse_args(["--vae", str(vae_npz), "--allow-custom-vae"])
    assert args.vae == str(vae_npz) and args.allow_custom_vae
    codec = codec_from_args(args, device="cpu")
    assert codec.decode(np.zeros((1, 16), np.int64)).shape == (1, 64, 64)
    with pytest.raises(WeightsError) as err:
        codec_from_args(parser.parse_args(["--vae", str(vae_npz)]), device="cpu")
    assert (err.value.code, err.value.field) == ("vae_checksum", "vae")
    assert "--allow-custom-vae" in cli_message(err.value)
    assert parser.parse_args([]).vae is None
    os.environ.pop(w.VAE_ENV, None)
