"""A worker Python that takes its time over each chip batch, so that a cancel lands mid-run.

The plugin runs the worker as ``PYTHON -m paligemma_qgis.cli.worker ...``; the wrapper given as
that Python runs the real worker with its progress report slowed down.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPT = """
import sys, time
from paligemma_qgis.cli import worker

_report = worker.JsonLinesProgress.report

def slow_report(self, done, total, message=""):
    _report(self, done, total, message)
    if message.endswith("segmenting chips"):
        time.sleep({seconds})

worker.JsonLinesProgress.report = slow_report
sys.exit(worker.main(sys.argv[sys.argv.index("paligemma_qgis.cli.worker") + 1:]))
"""


def slow_worker_python(folder: Path, seconds: float) -> str:
    """Write the slowed worker and its wrapper into ``folder``; the wrapper's path, to use as the Python."""
    script = folder / "slow_worker.py"
    script.write_text(_SCRIPT.format(seconds=seconds))
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)
