"""The command line as users run it: help, one-line errors, Ctrl-C as a clean cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic_rasters import make_scene

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paligemma_qgis", *args], capture_output=True, text=True, env=ENV, **kw
    )


def test_every_command_has_help():
    for command in (
        "segment",
        "revectorize",
        "export",
        "export-pairs",
        "evaluate",
        "weights",
        "worker",
        "finetune",
    ):
        proc = _cli(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "usage:" in proc.stdout


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    bogus = tmp_path / "not_a_raster.tif"
    bogus.write_text("hello")
    proc = _cli("segment", str(bogus), str(tmp_path / "out.gpkg"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("error: ") and str(bogus) in last
    assert not (tmp_path / "out.gpkg").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_cancel_cleanly_and_leave_no_output(tmp_path, signum):
    """Ctrl-C, a scheduler's SIGTERM and a closed terminal's SIGHUP: a clean cancel, then a resume."""
    scene = make_scene(tmp_path / "big.tif", width=4000, height=3000)
    out = tmp_path / "out.gpkg"
    # overlap 200 px: many small steps, so the run is still going when SIGINT arrives
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paligemma_qgis",
            "segment",
            str(scene.path),
            str(out),
            "--preset",
            "naip",
            "--overlap",
            "200",
            "--batch-size",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "chip" not in seen and time.monotonic() < deadline:  # the bar has started segmenting
        seen += proc.stderr.read(1)
    assert proc.poll() is None, "the run finished before it could be cancelled"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "cancelled: no output written"
    assert "Traceback" not in err
    assert not out.exists()
    # nothing finished in the one scene: no journal to continue from, no lock, no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def test_library_warnings_are_one_line_each_and_shown_once(capsys):
    import logging
    import warnings

    from paligemma_qgis.cli.library_warnings import one_line_warnings

    with one_line_warnings():
        for _ in range(3):  # e.g. once per chip
            warnings.warn(
                "The dataset's nodata attribute\n  is shadowing the alpha band", UserWarning, stacklevel=1
            )
            warnings.warn("an old API", FutureWarning, stacklevel=1)
            logging.getLogger("rasterio._env").warning("CPLE_AppDefined in TIFFReadDirectory: bad tag")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: The dataset's nodata attribute is shadowing the alpha band",
        "warning: FutureWarning: an old API",
        "warning: CPLE_AppDefined in TIFFReadDirectory: bad tag",
    ]
    assert all(type(h).__name__ != "_OnceHandler" for h in logging.getLogger().handlers)  # removed again
