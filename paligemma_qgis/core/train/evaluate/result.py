"""Scores, the evaluation result and its report, and the counting of model text.

Shared by both cases (core.train.evaluate.pairs and .geo): pixel counts are micro-averaged
(summed over the whole scene or all pairs); the invalid share counts outputs (chips or
lines) with at least one rejected object. An empty output is valid: it says "no water".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ...model.codec import MaskCodec

_STATUS_RE = re.compile(r"(\d+) ok, (\d+) rejected")


_STATUS_RE = re.compile(r"(\d+) ok, (\d+) rejected")


@dataclass
class Scores:
    """Confusion counts of water pixels and the scores they give."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, pred: np.ndarray, truth: np.ndarray, domain: np.ndarray | None = None) -> None:
        if domain is not None:
            pred, truth = pred[domain], truth[domain]
        self.tp += int(np.count_nonzero(pred & truth))
        self.fp += int(np.count_nonzero(pred & ~truth))
        self.fn += int(np.count_nonzero(~pred & truth))
        self.tn += int(np.count_nonzero(~pred & ~truth))

    @staticmethod
    def _ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    @property
    def iou(self) -> float | None:
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float | None:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass
class EvalResult:
    """Scores plus the invalid-output share (None when PRED holds no model text)."""

    mode: str
    scores: Scores
    n_items: int = 0  # pairs compared, or 1 for a scene
    n_outputs: int = 0  # model outputs seen (chips or JSONL lines)
    n_invalid_outputs: int = 0
    n_empty_outputs: int = 0
    n_objects: int = 0
    n_rejected_objects: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    pixels_evaluated: int = 0
    truth_nodata_pixels: int = 0  # left out: the truth says nothing there
    pred_nodata_pixels: int = 0  # left out: no chip saw it, or the prediction mask's nodata
    notes: list[str] = field(default_factory=list)

    @property
    def invalid_share(self) -> float | None:
        return self.n_invalid_outputs / self.n_outputs if self.n_outputs else None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["scores"] = self.scores.to_dict()
        d["invalid_share"] = self.invalid_share
        return d

    def table(self) -> str:
        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        s = self.scores
        rows = [
            ("IoU", fmt(s.iou)),
            ("precision", fmt(s.precision)),
            ("recall", fmt(s.recall)),
            ("F1", fmt(s.f1)),
            ("pixels evaluated", f"{self.pixels_evaluated}"),
            ("true water pixels", f"{s.tp + s.fn}"),
            ("predicted water pixels", f"{s.tp + s.fp}"),
        ]
        if self.mode == "pairs":
            rows.insert(4, ("pairs", f"{self.n_items}"))
        else:
            rows[5:5] = [
                ("truth nodata, left out", f"{self.truth_nodata_pixels}"),
                ("prediction nodata, left out", f"{self.pred_nodata_pixels}"),
            ]
        if self.n_outputs:
            rows += [
                ("model outputs", f"{self.n_outputs}"),
                ("invalid outputs", f"{self.n_invalid_outputs} ({fmt(self.invalid_share)})"),
                ("empty outputs", f"{self.n_empty_outputs}"),
                ("objects rejected", f"{self.n_rejected_objects} of {self.n_objects}"),
            ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        if self.reasons:
            lines.append("rejections: " + ", ".join(f"{r} x{n}" for r, n in sorted(self.reasons.items())))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- model text


def count_outputs(result: EvalResult, texts: Sequence[str | None]) -> None:
    """Model outputs (``None``: a chip without text) parsed and counted: objects, rejections, empties."""
    from ...model.tokens import parse_segmentation

    reasons: Counter[str] = Counter(result.reasons)
    for text in texts:
        if text is None:
            continue
        objs = parse_segmentation(text)
        result.n_outputs += 1
        result.n_objects += len(objs)
        bad = [o for o in objs if not o.accepted]
        result.n_rejected_objects += len(bad)
        result.n_invalid_outputs += int(bool(bad))
        result.n_empty_outputs += int(not objs)
        reasons.update(o.status for o in bad)
    result.reasons = dict(reasons)


def count_statuses(result: EvalResult, statuses: Sequence[str]) -> None:
    """Chips layer without model text: use the statuses the pipeline wrote (tokens.parse_summary)."""
    for st in statuses:
        st = st or ""
        if st.startswith("skipped"):  # too little valid data: the model never saw the chip
            continue
        result.n_outputs += 1
        m = _STATUS_RE.search(st)
        if m:
            ok, bad = int(m.group(1)), int(m.group(2))
            result.n_objects += ok + bad
            result.n_rejected_objects += bad
            result.n_invalid_outputs += int(bad > 0)
        elif st.startswith("error"):
            result.n_invalid_outputs += 1
        elif st == "empty":
            result.n_empty_outputs += 1


def needs_codec(text: str) -> bool:
    """Whether a model output has an accepted object to decode (the codec loads only then)."""
    from ...model.tokens import parse_segmentation

    return any(o.accepted and o.codes is not None for o in parse_segmentation(text))


def decode_text_mask(codec: MaskCodec, text: str, height: int, width: int) -> np.ndarray:
    """Accepted objects of a model output, decoded and pasted at (height, width)."""
    from ...model.masks import paste_masks
    from ...model.tokens import parse_segmentation

    objs = [o for o in parse_segmentation(text) if o.accepted and o.codes is not None]
    if not objs:
        return np.zeros((height, width), bool)
    decoded = codec.decode(np.array([o.codes for o in objs], dtype=np.int64))
    return np.asarray(paste_masks(objs, decoded, height, width)).astype(bool)
