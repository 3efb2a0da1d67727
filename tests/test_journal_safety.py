"""The run journal is data that is believed only where this user wrote it (issue 20, findings 2-4):
a planted pickle journal runs nothing, flipped bytes never give a wrong output or a traceback,
a symbolic link (or another user's file) in place of the lock or journal is refused, and
``--restart`` with a journal it cannot delete says so in one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from synthetic_rasters import make_scene

from paligemma_qgis.core.errors import PaliGemmaQgisError
from paligemma_qgis.core.inputs.scenes import resolve_inputs
from paligemma_qgis.core.run.driver import journal_key, segment_raster
from paligemma_qgis.core.run.journal import SCHEMA, Journal, journal_path
from paligemma_qgis.core.run.journal_seal import STATE_ENV
from paligemma_qgis.core.run.results import RecordError, SceneResult
from paligemma_qgis.core.specs import SegmentSpec

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

OVERLAP = "120"  # many small steps: a killed run stops part way


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return [
        make_scene(
            folder / f"j{i}_2021080{i + 1}.tif", width=300 + 37 * i, height=260 + 11 * i, seed=10 + i
        ).path
        for i in range(5)
    ]


@pytest.fixture(scope="module")
def reference(scenes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "ref.gpkg"
    segment_raster(_options(scenes, out))
    return out


@pytest.fixture(autouse=True)
def own_key(tmp_path_factory, monkeypatch):
    """Every test keeps its journal key in a folder of its own (as a user's state folder)."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path_factory.mktemp("state")))


def _options(scenes: list[Path], out: Path) -> SegmentSpec:
    """The options the command line makes of ``_args``: runs in this process continue its journals."""
    from paligemma_qgis.cli import build_parser
    from paligemma_qgis.cli.segment import spec_from_args

    return spec_from_args(build_parser().parse_args(_args(scenes, out)))


def _args(scenes: list[Path], out: Path) -> list[str]:
    return ["segment", *map(str, scenes), str(out), "--nir", "4", "--overlap", OVERLAP]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        **kw,
    )


def _layers(path: Path) -> dict[str, object]:
    water = pyogrio.read_dataframe(path, layer="water")
    scenes = pyogrio.read_dataframe(path, layer="scenes", read_geometry=False)
    chips = pyogrio.read_dataframe(path, layer="chips", read_geometry=False)
    return {
        "water": [(s, g.wkb) for s, g in zip(water["scene"], water.geometry, strict=True)],
        "area": water["area_m2"].to_numpy(),
        "scenes": scenes[
            ["scene", "status", "chips", "skipped", "water_area_m2", "observed_area_m2"]
        ].values.tolist(),
        "chips": chips[["scene", "chip_id", "status"]].values.tolist(),
    }


def _assert_same_output(out: Path, reference: Path) -> None:
    got, want = _layers(out), _layers(reference)
    assert got["scenes"] == want["scenes"]
    assert got["chips"] == want["chips"]
    assert got["water"] == want["water"]
    np.testing.assert_array_equal(got["area"], want["area"])


def _killed_run(scenes: list[Path], out: Path, at_least: int) -> None:
    """Run the command and kill -9 it once ``at_least`` scenes are journaled."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "paligemma_qgis", *_args(scenes, out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    journal = journal_path(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        )
        with contextlib.suppress(sqlite3.Error):
            if journal.exists():
                with contextlib.closing(
                    sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
                ) as db:
                    if db.execute("SELECT count(*) FROM scenes").fetchone()[0] >= at_least:
                        proc.kill()
                        proc.wait()
                        proc.stderr.close()
                        return
        time.sleep(0.03)
    proc.kill()
    raise AssertionError("the journal never got there")


# ----------------------------------------------------------------------------- planted journals
class _Planted:
    """Unpickling this creates ``marker``: what a planted journal would make a pickle reader run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _plant(kind: str, journal: Path, options: SegmentSpec, marker: Path) -> None:
    payload = pickle.dumps(_Planted(marker))
    if kind == "pickle file":
        journal.write_bytes(payload)
        return
    ids = [s.id for s in resolve_inputs(list(options.raster))]
    digest, values = journal_key(options, resolve_inputs(list(options.raster)))
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        if kind == "schema 2":  # what the journal looked like while it pickled, fingerprint and all
            db.executescript(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                "CREATE TABLE chips (scene TEXT, chip INTEGER, text TEXT, valid BLOB, PRIMARY KEY (scene, chip));"
                "CREATE TABLE scenes (scene TEXT PRIMARY KEY, status TEXT, result BLOB);"
            )
            db.executemany("INSERT INTO scenes VALUES (?, 'done', ?)", [(i, payload) for i in ids])
            meta = {"fingerprint": digest, "schema": "2", "options": json.dumps(values)}
        else:  # today's layout, sealed with a key guessed from the command alone
            db.executescript(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                "CREATE TABLE chips (scene TEXT, chip INTEGER, text TEXT, valid BLOB, mac BLOB, PRIMARY KEY (scene, chip));"
                "CREATE TABLE scenes (scene TEXT PRIMARY KEY, status TEXT, result BLOB, mac BLOB);"
            )
            db.executemany(
                "INSERT INTO scenes VALUES (?, 'done', ?, ?)", [(i, payload, b"\0" * 32) for i in ids]
            )
            meta = {"fingerprint": digest, "schema": str(SCHEMA), "nonce": "00" * 16, "seal": "00" * 32}
            meta["options"] = json.dumps(values)
        db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))


@pytest.mark.parametrize("kind", ["schema 2", "today's layout, forged", "pickle file"])
def test_a_planted_pickle_journal_runs_nothing(scenes, reference, tmp_path, kind) -> None:
    out, marker = tmp_path / "water.gpkg", tmp_path / "PWNED"
    _plant(kind, journal_path(out), _options(scenes, out), marker)
    proc = _cli(*_args(scenes, out))
    assert not marker.exists()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "journal of an earlier run is not used" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    _assert_same_output(out, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["water.gpkg"]


def test_a_journal_written_by_another_user_key_is_redone(
    scenes, reference, tmp_path, monkeypatch, caplog
) -> None:
    """Synced from elsewhere, or planted from a real run elsewhere: not this user's key, not believed."""
    out = tmp_path / "water.gpkg"
    _killed_run(scenes, out, at_least=2)
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "another-computer"))
    with caplog.at_level(logging.WARNING):
        summary = segment_raster(_options(scenes, out))
    assert summary.details["scenes_from_journal"] == 0
    assert any("not written by this user on this computer" in r.getMessage() for r in caplog.records)
    _assert_same_output(out, reference)


# ----------------------------------------------------------------------------- flipped bytes
def _flip_offsets(size: int, page: int = 4096, seed: int = 20) -> list[int]:
    """The header's bytes, then one random byte in every page, then more at random."""
    rng = random.Random(seed)
    offsets = [0, 16, 18, 21, 24, 28, 40, 56, 92, 96]
    offsets += [p + rng.randrange(page) for p in range(0, size, page)]
    offsets += [rng.randrange(size) for _ in range(8)]
    return sorted({o for o in offsets if o < size})


def _run_on(files: dict[Path, bytes], scenes: list[Path], out: Path, reference: Path, caplog) -> str:
    """Run the command over a journal made of ``files``: what happened (never a wrong output)."""
    for p in out.parent.iterdir():
        if p.name.startswith(out.name):
            p.unlink()
    for path, data in files.items():
        path.write_bytes(data)
        path.chmod(0o600)
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING):
            summary = segment_raster(_options(scenes, out))
    except PaliGemmaQgisError as exc:  # the run stopped with one clear line naming the journal
        assert "\n" not in str(exc) and str(journal_path(out)) in str(exc), exc
        return f"stopped with one line: {exc}"
    _assert_same_output(out, reference)
    said = " ".join(r.getMessage() for r in caplog.records)
    if "is not used" in said:
        return "journal discarded"
    if "failed their check" in said:
        return "records redone"
    return f"resumed {summary.details['scenes_from_journal']} scenes"


def test_flipped_bytes_never_give_a_wrong_output_or_a_traceback(scenes, reference, tmp_path, caplog) -> None:
    """Bytes flipped all over a killed run's journal: the same output as an uninterrupted run
    (redoing what fails its check), or one clear line; never a traceback, never a wrong polygon."""
    out = tmp_path / "water.gpkg"
    journal, wal = journal_path(out), Path(f"{journal_path(out)}-wal")
    _killed_run(scenes, out, at_least=3)
    for name in (journal.name, wal.name, f"{journal.name}-shm", f"{out.name}.lock"):
        if (tmp_path / name).exists():  # created 0600, whatever the umask
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    killed = {journal: journal.read_bytes(), wal: wal.read_bytes() if wal.exists() else b""}
    outcomes: list[str] = []
    # 1. in the WAL the killed run left (its frames carry SQLite's own checksums)
    size = len(killed[wal])
    for offset in sorted(
        {0, 12, 20, 28, 32 + 4, 32 + 30, 32 + 24 + 100, size // 2, size - 10} & set(range(size))
    ):
        damaged = bytearray(killed[wal])
        damaged[offset] ^= 0xFF
        outcomes.append(
            _run_on({journal: killed[journal], wal: bytes(damaged)}, scenes, out, reference, caplog)
        )
    # 2. in the file itself, with the WAL folded in (what the next run reads)
    for path, data in killed.items():
        path.write_bytes(data)
    with contextlib.closing(sqlite3.connect(journal)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pristine = journal.read_bytes()
    for offset in _flip_offsets(len(pristine)):
        damaged = bytearray(pristine)
        damaged[offset] ^= 0xFF
        outcome = _run_on({journal: bytes(damaged)}, scenes, out, reference, caplog)
        assert not outcome.startswith("resumed") or outcome == "resumed 3 scenes" or "resumed 4" in outcome, (
            outcome
        )
        outcomes.append(outcome)
    counts = {k: sum(o.split(":")[0] == k for o in outcomes) for k in {o.split(":")[0] for o in outcomes}}
    print(f"{len(outcomes)} flipped journals: {counts}")
    assert counts.get("records redone") and counts.get("journal discarded"), outcomes


def test_flipped_bytes_from_the_command_line_are_one_line_at_most(scenes, reference, tmp_path) -> None:
    out = tmp_path / "water.gpkg"
    journal = journal_path(out)
    _killed_run(scenes, out, at_least=2)
    with contextlib.closing(sqlite3.connect(journal)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damaged = bytearray(journal.read_bytes())
    for offset in (len(damaged) - 3000, 4096 + 200, 18):  # a record, the first table page, the header
        damaged[offset] ^= 0x5A
    journal.write_bytes(bytes(damaged))
    proc = _cli(*_args(scenes, out))
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0 or proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr
    if proc.returncode == 0:
        _assert_same_output(out, reference)


def test_records_are_data_and_round_trip(scenes, tmp_path) -> None:
    out = tmp_path / "water.gpkg"
    _killed_run(scenes, out, at_least=1)
    with contextlib.closing(sqlite3.connect(journal_path(out))) as db:
        blob = db.execute("SELECT result FROM scenes WHERE status = 'done'").fetchone()[0]
    result = SceneResult.from_bytes(blob)
    assert result.to_bytes() == blob and len(result.water) and result.records
    assert b"\x80\x04" not in blob[:2]  # not a pickle
    for bad in (b"", b"\x80\x04K\x01.", blob[:-5], blob + b"x", blob[:20] + b"[" + blob[21:]):
        with pytest.raises(RecordError):
            SceneResult.from_bytes(bad)


# ----------------------------------------------------------------------------- links, owners, deletion
@pytest.mark.parametrize("suffix", [".lock", ".journal", ".journal-wal", ".journal-shm"])
def test_a_symlink_in_place_of_the_lock_or_journal_is_refused(scenes, tmp_path, suffix) -> None:
    out = tmp_path / "water.gpkg"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    if suffix.startswith(".journal-"):  # the SQLite side files only matter beside a journal
        with Journal.open(out, journal_key(_options(scenes[:1], out), resolve_inputs([str(scenes[0])]))):
            pass
    Path(f"{out}{suffix}").symlink_to(victim)
    proc = _cli(*_args(scenes[:1], out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}{suffix}: ") and "is a symbolic link" in last, last
    assert victim.read_text() == "keep me" and not out.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
@pytest.mark.parametrize("suffix", [".lock", ".journal"])
def test_a_lock_or_journal_of_another_user_is_refused(scenes, tmp_path, suffix) -> None:
    out = tmp_path / "water.gpkg"
    planted = Path(f"{out}{suffix}")
    planted.write_bytes(b"")
    os.chown(planted, 65534, 65534)
    with pytest.raises(PaliGemmaQgisError, match=r"belongs to another user \(uid 65534\)"):
        segment_raster(_options(scenes[:1], out))
    assert not out.exists()


def test_a_hard_linked_journal_is_refused(scenes, tmp_path) -> None:
    out = tmp_path / "water.gpkg"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    os.link(victim, journal_path(out))
    with pytest.raises(PaliGemmaQgisError, match="has other hard links"):
        segment_raster(_options(scenes[:1], out))
    assert victim.read_text() == "keep me"


def test_restart_with_a_journal_it_cannot_delete_is_one_line(scenes, tmp_path) -> None:
    out = tmp_path / "water.gpkg"
    stuck = journal_path(out)
    stuck.mkdir()
    (stuck / "something").write_text("x")
    for extra in (["--restart"], []):
        proc = _cli(*_args(scenes[:1], out), *extra)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {stuck}: "), last
        assert ("cannot delete" if extra else "is not a plain file") in last, last
    shutil.rmtree(stuck)


def test_a_changed_record_is_dropped_and_said_so(tmp_path, caplog) -> None:
    """Chip answers and scene records that fail their check are not believed: asked again, mapped
    again, each said in one warning; a record that changes during the run stops it in one line."""
    out = tmp_path / "water.gpkg"
    fingerprint = ("0123456789abcdef", {"scenes": [["a", "/data/a.tif"]]})
    with Journal.open(out, fingerprint) as journal:
        journal.add_texts("a", [(0, "<loc0001> water", None), (1, "<loc0002> water", b"\x01")])
        journal.scene_done("b", b"record of b")
        journal.scene_done("c", b"record of c")
    with contextlib.closing(sqlite3.connect(journal_path(out))) as db, db:
        db.execute("UPDATE chips SET text = '<loc0666> water' WHERE chip = 1")
        db.execute("UPDATE scenes SET status = 'done', result = X'00' WHERE scene = 'c'")
    with caplog.at_level(logging.WARNING), Journal.open(out, fingerprint) as journal:
        assert journal.resumed
        assert journal.answers("a") == ({0: "<loc0001> water"}, {0: None})
        assert journal.finished() == {"b": "done"}
        said = [r.getMessage() for r in caplog.records]
        assert any("1 finished scene(s) failed their check" in m and m.endswith(": c") for m in said), said
        assert any("1 chip answer(s) failed their check" in m for m in said), said
        assert journal.result("b") == b"record of b"
        with contextlib.closing(sqlite3.connect(journal_path(out))) as db, db:
            db.execute("UPDATE scenes SET result = X'01' WHERE scene = 'b'")
        with pytest.raises(PaliGemmaQgisError, match=r"record of scene b changed during the run") as caught:
            journal.result("b")
        assert "\n" not in str(caught.value)
        assert journal.finished() == {}  # gone: the next run maps it again
