"""``worker --journal``: what an interrupted run left beside a segment job's output, as one JSON line.

The plugin asks this before it starts a run into an output that has a journal (a file check
it can make itself): is it the same run, which then continues, or a run of other rasters or
options, whose work the new run would discard? Answering needs the core (the job's scenes
and the journal's keyed fingerprint), which QGIS must not import, hence the worker.
"""

from __future__ import annotations

from typing import Any


def journal_state(job: dict[str, Any]) -> dict[str, Any]:
    """``core.run.journal_peek.peek`` for the job's output and fingerprint; ``unknown`` (and why)
    when the job cannot be read as a segment run."""
    from ..core.errors import PaliGemmaQgisError

    options = job.get("options")
    if job.get("task") != "segment" or not isinstance(options, dict):
        return {"journal": "unknown", "why": "not a segment job"}
    try:
        from ..core.run.driver import input_scenes, journal_key
        from ..core.run.journal_peek import peek
        from ..core.specs import segment_spec

        spec = segment_spec(options).resolved()
        return peek(spec.output.path, journal_key(spec, input_scenes(spec)))
    except (PaliGemmaQgisError, OSError, ValueError, TypeError, KeyError) as exc:
        return {"journal": "unknown", "why": str(exc) or type(exc).__name__}
