"""A Ray started by the tool is for this computer alone (issue 20, finding 5): every socket its
processes listen on is on loopback, and it asks a token only this run knows."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import pytest
from synthetic_rasters import make_scene

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


@pytest.mark.parametrize("address", [[], ["--ray-address", "local"]], ids=["no address", "local"])
def test_a_local_ray_listens_on_loopback_only_and_asks_a_token(tmp_path, address) -> None:
    scene = make_scene(tmp_path / "big.tif", width=1500, height=1200)
    out = tmp_path / "out.gpkg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "paligemma_qgis", "segment", str(scene.path), str(out), "--nir", "4"]
        + ["--executor", "ray", "--overlap", "100", *address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    listening: dict[tuple[str, str, int], None] = {}
    auth: dict[str, str | None] = {}
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            break
        for p in family:
            try:
                for conn in p.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        listening[(p.name(), conn.laddr.ip, conn.laddr.port)] = None
                if p.name() == "gcs_server" and not auth:
                    env = p.environ()
                    if "PATH" in env:  # read after exec (a process being born reads empty)
                        auth = {k: env.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
            except psutil.Error:  # a worker that just ended
                continue
        time.sleep(0.1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # Ray was seen running
    assert [key for key in listening if not _loopback(key[1])] == []
    assert auth.get("RAY_AUTH_MODE") == "token" and len(auth.get("RAY_AUTH_TOKEN") or "") >= 32
    assert "RAY_AUTH_TOKEN" not in os.environ  # the token stayed with that run
