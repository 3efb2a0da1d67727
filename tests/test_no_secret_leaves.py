"""A run over credential-bearing /vsicurl/ URLs (basic auth and a signed query, served from
127.0.0.1) leaves no secret in any file, stream or worker event: a killed run, its resumption
with a failing scene, the worker's events (result and error), and an export (issue 20, finding 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from credential_server import SECRETS, serve

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
NAIP = "rasters/opengeos_naip_m_4709963_se_14_1_20200831.tif"
NAMES = ["a/lakes_20200831.tif", "b/ponds_20200901.tif", "c/marsh_20200902.tif", "d/fens_20200903.tif"]
NEEDLES = sorted(
    {s for secret in SECRETS for s in (secret, quote(secret, safe=""), quote(quote(secret, safe="")))}
)


def _leaks(data: bytes | str) -> list[str]:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    return [n for n in NEEDLES if n in text]


def _file_leaks(folder: Path) -> dict[str, list[str]]:
    """Every file under ``folder`` (names too), and every value of every table of each SQLite file."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        leaks = _leaks(path.read_bytes()) + _leaks(str(path.relative_to(folder)))
        if path.read_bytes()[:16] == b"SQLite format 3\x00":
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                for table in tables:
                    for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - the file's own tables
                        for value in row:
                            if isinstance(value, (str, bytes)):
                                leaks += [f"{table}: {n}" for n in _leaks(value)]
        if leaks:
            found[str(path)] = leaks
    return found


def _wait_for_scenes(journal: Path, proc: subprocess.Popen, at_least: int = 1, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        with contextlib.suppress(sqlite3.Error):
            if journal.exists():
                with contextlib.closing(
                    sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
                ) as db:
                    if (
                        db.execute("SELECT count(*) FROM scenes WHERE status = 'done'").fetchone()[0]
                        >= at_least
                    ):
                        return
        time.sleep(0.05)
    raise AssertionError("no scene was journaled in time")


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *args], capture_output=True, text=True, env=ENV, **kw
    )


def test_no_secret_in_any_file_stream_or_event(shared_data, tmp_path, vae_npz) -> None:
    raster = shared_data / NAIP
    work = tmp_path / "run"
    work.mkdir()
    out = work / "water.gpkg"
    with serve(dict.fromkeys(NAMES, raster)) as server:
        urls = [server.url(n) for n in NAMES] + [server.url("gone/missing_20200904.tif")]
        # 1. a run killed once a scene is journaled: journal, lock and SQLite side files stay
        server.delay_s = 0.15
        proc = subprocess.Popen(
            [sys.executable, "-m", "paligemma_qgis", "segment", *urls, str(out), "--nir", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        _wait_for_scenes(Path(f"{out}.journal"), proc)
        proc.kill()
        killed_out, killed_err = proc.communicate()
        assert Path(f"{out}.journal").exists() and Path(f"{out}.lock").exists()
        assert _file_leaks(work) == {}
        assert _leaks(killed_out) == [] and _leaks(killed_err) == []

        # 2. the same command finishes it; one scene fails (HTTP 404)
        server.delay_s = 0.0
        again = _cli("segment", *urls, str(out), "--nir", "4", "--json")
        assert again.returncode == 3, again.stderr[-2000:]
        summary = json.loads(again.stdout)
        assert summary["failed"] == 1 and summary["details"]["scenes_from_journal"] >= 1
        assert "REDACTED" in summary["details"]["failed_scenes"]["missing_20200904"]
        assert _leaks(again.stdout) == [] and _leaks(again.stderr) == []
        assert sorted(p.name for p in work.iterdir()) == ["water.gpkg"]
        assert _file_leaks(work) == {}
        scenes = sqlite3.connect(out).execute("SELECT scene, path FROM scenes ORDER BY fid").fetchall()
        assert [s for s, _ in scenes] == ["lakes_20200831", "ponds_20200901", "marsh_20200902", "fens_20200903",
                                          "missing_20200904"]  # fmt: skip
        assert all("REDACTED@127.0.0.1" in p for _, p in scenes)

        # 3. the worker: its result event, and the error event of a run whose every scene fails
        events = []
        for raster_urls, output in ((urls, tmp_path / "worker.gpkg"), (urls[-1:], tmp_path / "none.gpkg")):
            job = {"task": "segment", "options": {"raster": raster_urls, "output": str(output), "nir": 4}}
            worker = _cli("worker", input=json.dumps(job) + "\n", timeout=300)
            events += [json.loads(line) for line in worker.stdout.splitlines() if line.strip()]
            assert _leaks(worker.stdout) == [] and _leaks(worker.stderr) == []
        kinds = [e["event"] for e in events if e["event"] != "progress"]
        assert kinds == ["result", "error"], kinds
        assert (tmp_path / "worker.gpkg").exists() and _file_leaks(tmp_path / "worker.gpkg") == {}

        # 4. an export of training chips from such a URL
        export = _cli(
            "export", urls[0], str(tmp_path / "export"), "--labels", "water-index", "--nir", "4",
            "--vae", str(vae_npz), "--allow-custom-vae",
        )  # fmt: skip
        assert export.returncode == 0, export.stderr[-2000:]
        assert _leaks(export.stdout) == [] and _leaks(export.stderr) == []
        assert (tmp_path / "export" / "export.json").exists()
        assert _file_leaks(tmp_path / "export") == {}


@pytest.mark.parametrize("secret", SECRETS)
def test_the_needles_would_be_found(secret) -> None:
    """The scan is not blind: a secret in a file name, a value or a percent-encoded URL is found."""
    assert _leaks(f"x {secret} y") and _leaks(quote(f"u={secret}", safe=""))
