"""One writer per output, and work folders that never pile up (core.run.atomic), across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from paligemma_qgis.core.errors import OutputExistsError
from paligemma_qgis.core.run.atomic import claim_output, sweep_work_folders, work_folder

HOLD = """
import sys, time
from paligemma_qgis.core.run.atomic import {what}
held = {what}(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def _holder(tmp_path, what: str, target) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(what=what), str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_claim_fails_at_once_naming_the_holder(tmp_path) -> None:
    out = tmp_path / "water.gpkg"
    holder = _holder(tmp_path, "claim_output", out)
    try:
        started = time.monotonic()
        with pytest.raises(
            OutputExistsError, match=rf"another run is writing this output \(process {holder.pid}"
        ):
            claim_output(out)
        assert time.monotonic() - started < 1.0
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_s_claim_is_taken_over_with_its_temp_files(tmp_path) -> None:
    out = tmp_path / "water.gpkg"
    holder = _holder(tmp_path, "claim_output", out)
    (tmp_path / ".water.gpkg.abc123.tmp.gpkg").write_text("half a GeoPackage")
    (tmp_path / ".other.gpkg.x.tmp").write_text("not ours")
    holder.kill()  # kill -9: no clean-up ran
    holder.wait()
    assert (tmp_path / "water.gpkg.lock").exists()
    with claim_output(out) as claim:
        assert claim.took_over
        assert sorted(p.name for p in tmp_path.iterdir()) == [".other.gpkg.x.tmp", "water.gpkg.lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.gpkg.x.tmp"]  # the lock goes with the run


def test_sweeping_removes_dead_owners_folders_only(tmp_path) -> None:
    alive = _holder(tmp_path, "work_folder", tmp_path)
    dead = _holder(tmp_path, "work_folder", tmp_path)
    dead.kill()
    dead.wait()
    newborn = tmp_path / "paligemma_work_1_new"  # created, its lock not yet in place
    newborn.mkdir()
    orphan = tmp_path / "paligemma_work_2_old"  # killed before its lock was in place, long ago
    orphan.mkdir()
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    folders = {p.name for p in tmp_path.iterdir()}
    try:
        removed = {p.name for p in sweep_work_folders(tmp_path)}
        left = {p.name for p in tmp_path.iterdir()}
        assert len(removed) == 2 and "paligemma_work_2_old" in removed
        assert {f for f in folders if f.startswith(f"paligemma_work_{alive.pid}_")} <= left
        assert "paligemma_work_1_new" in left
        assert not any(f.startswith(f"paligemma_work_{dead.pid}_") for f in left)
    finally:
        alive.kill()
        alive.wait()


def test_many_processes_making_work_folders_at_once_never_sweep_each_other(tmp_path) -> None:
    """Ray runs a scene task per worker process, each making its mosaic folder: none may vanish."""
    script = (
        "import sys\n"
        "from paligemma_qgis.core.run.atomic import work_folder\n"
        "for _ in range(40):\n"
        "    w = work_folder(sys.argv[1])\n"
        "    (w.path / 'counts').write_bytes(b'x')  # fails if another process swept it\n"
        "    w.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert list(tmp_path.iterdir()) == []


def test_a_work_folder_is_removed_on_close(tmp_path) -> None:
    with work_folder(tmp_path) as folder:
        assert folder.path.is_dir() and (folder.path / ".lock").exists()
    assert not folder.path.exists()
