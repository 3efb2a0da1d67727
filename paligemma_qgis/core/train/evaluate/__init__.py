"""Pixel-level scores of predicted water against known water, plus how often the model's text
was invalid.

Two cases: georeferenced (core.train.evaluate.geo: PRED a vector file or mask raster, TRUTH a
vector file or mask raster, on one reference grid) and pairs (core.train.evaluate.pairs: PRED
a JSONL of model outputs, TRUTH a folder of masks or a JSONL of truth suffixes). Both share
the scores, the result and the model-text counting (core.train.evaluate.result).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ...progress import Progress
from ..options import EvaluateOptions
from .geo import evaluate_geo
from .pairs import OUTPUT_KEYS, evaluate_pairs
from .result import EvalResult, Scores, count_outputs, count_statuses, decode_text_mask

__all__ = [
    "OUTPUT_KEYS",
    "EvalResult",
    "EvaluateOptions",
    "Scores",
    "count_outputs",
    "count_statuses",
    "decode_text_mask",
    "evaluate",
    "evaluate_geo",
    "evaluate_pairs",
]


def evaluate(options: EvaluateOptions, progress: Progress | None = None) -> EvalResult:
    """Dispatch on PRED: a ``.jsonl`` of model outputs -> pairs, anything else -> georeferenced."""
    if not Path(options.pred).exists():
        raise InputError("evaluate_not_found", field="pred", path=options.pred, what="prediction file")
    if not Path(options.truth).exists():
        raise InputError("evaluate_not_found", field="truth", path=options.truth, what="truth")
    if options.is_pairs:
        return evaluate_pairs(options, progress)
    return evaluate_geo(options, progress)
