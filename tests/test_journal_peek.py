"""What an interrupted run left beside its output, as a front end learns it before the next run
(core.run.journal_peek, ``worker --journal``), and what a cancel says it keeps (Cancelled.kept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_rasters import make_scene

from paligemma_qgis.core.progress import CallbackProgress, Cancelled
from paligemma_qgis.core.run.driver import journal_key, segment_raster
from paligemma_qgis.core.run.journal_peek import peek
from paligemma_qgis.core.specs import segment_spec

REPO = Path(__file__).resolve().parents[1]


def _options(paths: list[Path], output: Path, **extra) -> dict:
    return {"raster": [str(p) for p in paths], "output": str(output), "engine": "water-index",
            "preset": "naip", "batch_size": 1, **extra}  # fmt: skip


@pytest.fixture
def interrupted(tmp_path):
    """Three scenes, a run stopped in the third: (scene paths, output, the options of that run)."""
    paths = [make_scene(tmp_path / f"{name}.tif", width=200, height=180, seed=k).path
             for k, name in enumerate(("a", "b", "c"))]  # fmt: skip
    output = tmp_path / "water.gpkg"
    options = _options(paths, output)
    seen = {"third": False}

    def report(done, total, message):
        seen["third"] = seen["third"] or (message.startswith("scene 3/3") and "segmenting" in message)

    with pytest.raises(Cancelled) as caught:
        segment_raster(segment_spec(options), CallbackProgress(report, lambda: seen["third"]))
    assert caught.value.kept == {"scenes": 2, "total": 3, "chips": 0}
    return paths, output, options


def _key(options: dict):
    from paligemma_qgis.core.inputs.scenes import resolve_inputs

    spec = segment_spec(options).resolved()
    return journal_key(spec, resolve_inputs(list(spec.raster), engine=spec.engine.name))


def test_peek_tells_the_same_run_from_other_rasters_and_other_options(interrupted):
    paths, output, options = interrupted
    journal = Path(f"{output}.journal")
    before = journal.read_bytes()
    siblings = sorted(p.name for p in output.parent.iterdir())

    assert peek(output, _key(options)) == {"journal": "same", "scenes_done": 2, "chips": 0, "total": 3}
    fewer = peek(output, _key(_options(paths[:2], output)))
    assert fewer["journal"] == "other" and fewer["other_inputs"] and fewer["scenes_done"] == 2
    changed = peek(output, _key({**options, "min_area_m2": 500}))
    assert changed["journal"] == "other" and not changed["other_inputs"]
    assert changed["changed"] == ["min_area_m2"]
    # A restart flag or another work folder is not another run (they do not change the answer).
    assert peek(output, _key({**options, "restart": True, "workdir": "/tmp"}))["journal"] == "same"
    # Read only: the journal is as it was and nothing was made beside it.
    assert journal.read_bytes() == before
    assert sorted(p.name for p in output.parent.iterdir()) == siblings


def test_peek_without_a_journal_and_with_one_not_to_believe(tmp_path):
    output = tmp_path / "water.gpkg"
    key = ("0" * 16, {"scenes": []})
    assert peek(output, key) == {"journal": "none"}
    Path(f"{output}.journal").write_bytes(b"SQLite format 3\x00" + os.urandom(200))
    assert peek(output, key)["journal"] == "unusable"
    Path(f"{output}.journal").unlink()
    Path(f"{output}.journal").symlink_to(tmp_path / "elsewhere")
    state = peek(output, key)
    assert state["journal"] == "unusable" and "symbolic link" in state["why"]


def test_worker_journal_answers_for_a_job(interrupted):
    paths, output, options = interrupted

    def ask(job: dict) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PROJ_LIB", "PROJ_DATA")}
        env["PYTHONPATH"] = str(REPO)
        done = subprocess.run([sys.executable, "-m", "paligemma_qgis.cli.worker", "--journal"],
                              input=json.dumps(job) + "\n", capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert ask({"task": "segment", "options": options})["journal"] == "same"
    other = ask({"task": "segment", "options": _options(paths[1:], output)})
    assert (other["journal"], other["other_inputs"], other["total"]) == ("other", True, 3)
    assert ask({"task": "segment", "options": {"output": str(output)}})["journal"] == "unknown"
    assert ask({"task": "export", "options": {}})["journal"] == "unknown"


def test_a_cancel_with_nothing_finished_says_nothing_is_kept(tmp_path):
    path = make_scene(tmp_path / "a.tif", width=200, height=180).path
    output = tmp_path / "water.gpkg"
    with pytest.raises(Cancelled) as caught:
        segment_raster(segment_spec(_options([path], output)), CallbackProgress(None, lambda: True))
    assert caught.value.kept == {"scenes": 0, "total": 1, "chips": 0}
    assert not Path(f"{output}.journal").exists()
