"""What the plugin says about a run: its group's name, how it stopped or continued, what to doubt.

No QGIS import (plain text from the worker's summaries), so every sentence is testable alone.
A run's group is named by what it holds ("Water in lakes", "Water in 5 rasters (2 failed)",
"Water change 1985 → 2020"), never by the raster's name alone (beside the raster layer of
that name it read as a second copy of it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def single_name(raster: str) -> str:
    """A run over one raster: "Water in lakes"."""
    return f"Water in {raster}"


def region_name(count: int, failed: int = 0) -> str:
    """A run over several rasters: "Water in 5 rasters", "Water in 5 rasters (2 failed)"."""
    return f"Water in {_plural(count, 'raster')}" + (f" ({failed} failed)" if failed else "")


def change_name(before_date: str | None, after_date: str | None) -> str:
    """ "Water change 1985 → 2020" (dates as the maps give them; "before"/"after" when undated)."""
    return f"Water change {before_date or 'before'} → {after_date or 'after'}"


def occurrence_name(observations: Any, dates: Sequence[Any] | None = None) -> str:
    """ "Water occurrence 2019–2024 (6 observations)"."""
    known = sorted(str(d) for d in dates or [] if d)
    span = (
        f" {known[0]}–{known[-1]}" if known and known[0] != known[-1] else (f" {known[0]}" if known else "")
    )
    count = f" ({_plural(observations, 'observation')})" if isinstance(observations, int) else ""
    return f"Water occurrence{span}{count}"


def export_name(raster: str) -> str:
    return f"Training data from {raster}"


def stopped_text(kept: Mapping[str, Any], journal_left: bool, started: bool = True) -> str:
    """What a cancel leaves, in the words the issue asked for: never "failed".

    ``kept``: the worker's count of what the next run continues from (empty when it did not say:
    stopped before it began, or killed); ``journal_left``: a journal is beside the output now.
    """
    if not started:
        return "Stopped before the run started; nothing was written."
    scenes, total, chips = (kept.get(k) for k in ("scenes", "total", "chips"))
    if isinstance(scenes, int) and isinstance(total, int) and scenes > 0:
        what = "the scene is kept" if total == 1 else f"{scenes} of {total} scenes are kept"
        return f"Stopped: {what}. Run again to continue."
    if isinstance(chips, int) and chips > 0:
        return f"Stopped: the answers for {_plural(chips, 'chip')} are kept. Run again to continue."
    if kept or not journal_left:
        return "Stopped before a scene was finished: nothing is kept, nothing was written."
    return "Stopped: the work done so far is kept. Run again to continue."


def continued_text(summary: Mapping[str, Any]) -> str:
    """ "Continued: 12 scenes were already done." for a run that continued an interrupted one, else ""."""
    details = summary.get("details") if isinstance(summary.get("details"), dict) else {}
    if not details.get("resumed"):
        return ""
    scenes, chips = details.get("scenes_from_journal"), details.get("chips_from_journal")
    if isinstance(scenes, int) and scenes > 0:
        verb = "was" if scenes == 1 else "were"
        return f"Continued: {_plural(scenes, 'scene')} {verb} already done."
    if isinstance(chips, int) and chips > 0:
        verb = "was" if chips == 1 else "were"
        return f"Continued: {_plural(chips, 'chip')} {verb} already done."
    return "Continued an interrupted run."


# What to try when the water index doubts its map, in each front end's words.
UNSURE_FIXES = {
    "dialog": "choose the sensor's band Preset, set a fixed Threshold (Advanced), map an Area of "
    "polygons around the water, or use the PaliGemma engine",
    "processing": "set BANDS to the sensor's preset, THRESHOLD to a fixed value, AOI to polygons "
    "around the water, or ENGINE to PaliGemma",
}


def unsure_text(unsure: Sequence[tuple[str, str]], scenes: int, front: str = "dialog") -> str:
    """One line when the water index is unsure of a scene's map (``unsure``: (scene, why)), else ""."""
    if not unsure:
        return ""
    scene, why = unsure[0]
    if scenes <= 1:
        head = f"The water index is unsure of this map ({why})"
    else:
        more = f"; {len(unsure) - 1} more in the scenes layer" if len(unsure) > 1 else ""
        head = f"The water index is unsure of {len(unsure)} of {scenes} scenes ({scene}: {why}{more})"
    return f"{head}: its threshold may call land water. Check the map, or {UNSURE_FIXES[front]}."
