"""Pairs: model outputs (JSONL) scored against a folder of truth masks or a JSONL of truth suffixes.

PRED is a JSONL of model outputs (``{"image", "model_output"}``; ``prediction``, ``output``,
``text`` or ``suffix`` also read), TRUTH a folder of same-named masks (grey >
``mask_threshold``) or a JSONL with truth suffixes (decoded with the codec on the sizes of
``images``). Outputs are parsed with core.model.tokens; accepted objects are decoded with the
VQ-VAE and pasted at the truth's size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError
from ...inputs.files import image_size
from ...progress import Progress, check_cancelled
from ..options import EvaluateOptions
from .result import EvalResult, Scores, count_outputs, decode_text_mask, needs_codec

if TYPE_CHECKING:
    from ...model.codec import MaskCodec

OUTPUT_KEYS = ("model_output", "prediction", "output", "text", "suffix")
PAIRS_MASK_THRESHOLD = 150  # JPEG masks: water where the grey value is above this

# The truth of one pair at its size, or None when the pair has no truth.
TruthReader = Callable[[str], "np.ndarray | None"]


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    from ...inputs.files import read_jsonl

    return [rec for _, rec in read_jsonl(path, ("image",))]


def output_text(rec: Mapping[str, object], path: Path) -> str:
    """The model output of one JSONL line, under the first of OUTPUT_KEYS it has ("" when not text)."""
    for k in OUTPUT_KEYS:
        if k in rec:
            v = rec[k]
            return v if isinstance(v, str) else ""
    raise InputError(
        "evaluate_output_keys",
        field="pred",
        path=str(path),
        image=repr(rec.get("image")),
        keys=", ".join(OUTPUT_KEYS),
    )


def _find_image(folder: Path, name: str) -> Path | None:
    p = folder / name
    if p.is_file():
        return p
    for cand in folder.glob(Path(name).stem + ".*"):
        return cand
    return None


def _suffix_truth(opts: EvaluateOptions, truth: Path, codec: Callable[[], MaskCodec]) -> TruthReader:
    """Truth from a JSONL of suffixes, decoded at the size of the same-named image."""
    suffixes = {Path(str(r["image"])).stem: str(r.get("suffix", "")) for r in _read_jsonl(truth)}
    images = Path(opts.images) if opts.images else truth.parent / "images"
    if not images.is_dir():
        raise InputError("evaluate_images_not_found", field="images", path=str(images))

    def read(name: str) -> np.ndarray | None:
        img = _find_image(images, name)
        if Path(name).stem not in suffixes or img is None:
            return None
        w, h = image_size(img, "image", allow_large=opts.allow_large_images)
        text = suffixes[Path(name).stem]
        return decode_text_mask(codec(), text, h, w) if text.strip() else np.zeros((h, w), bool)

    return read


def _mask_truth(opts: EvaluateOptions, truth: Path) -> TruthReader:
    """Truth from a folder of same-named mask images."""
    from ..export import binarise_mask_image

    threshold = PAIRS_MASK_THRESHOLD if opts.mask_threshold is None else int(opts.mask_threshold)

    def read(name: str) -> np.ndarray | None:
        mpath = _find_image(truth, name)
        if mpath is None:
            return None
        return binarise_mask_image(mpath, threshold, allow_large=opts.allow_large_images)

    return read


def truth_reader(opts: EvaluateOptions, codec: Callable[[], MaskCodec]) -> TruthReader:
    """How to read each pair's truth: a JSONL of truth suffixes, or a folder of masks."""
    truth = Path(opts.truth)
    if truth.is_file() and truth.suffix.lower() == ".jsonl":
        return _suffix_truth(opts, truth, codec)
    if not truth.is_dir():
        raise InputError("evaluate_pairs_truth", field="truth", path=str(truth))
    return _mask_truth(opts, truth)


def score_pair(result: EvalResult, text: str, truth: np.ndarray, codec: Callable[[], MaskCodec]) -> None:
    """One output's water against its truth mask, added to ``result``."""
    h, w = truth.shape
    pred = decode_text_mask(codec(), text, h, w) if needs_codec(text) else np.zeros((h, w), bool)
    result.scores.add(pred, truth)
    result.pixels_evaluated += h * w
    result.n_items += 1


def evaluate_pairs(
    options: EvaluateOptions, progress: Progress | None = None, *, codec: MaskCodec | None = None
) -> EvalResult:
    """Model outputs (JSONL) vs a folder of truth masks or a JSONL of truth suffixes.

    ``codec``: the mask codec to decode with (default: loaded from ``options.vae`` when first needed).
    """
    pred = Path(options.pred)
    records = _read_jsonl(pred)
    result = EvalResult(mode="pairs", scores=Scores())
    texts = [output_text(r, pred) for r in records]
    count_outputs(result, texts)
    loaded: list[MaskCodec] = [codec] if codec is not None else []

    def get_codec() -> MaskCodec:
        if not loaded:
            from ..export import load_codec

            loaded.append(load_codec(options.vae, options.allow_custom_vae))
        return loaded[0]

    read_truth = truth_reader(options, get_codec)
    missing = 0
    for i, (rec, text) in enumerate(zip(records, texts, strict=True)):
        check_cancelled(progress)
        name = str(rec["image"])
        truth = read_truth(name)
        if truth is None:
            missing += 1
            continue
        score_pair(result, text or "", truth, get_codec)
        if progress is not None:
            progress.report(i + 1, len(records), name)
    if missing:
        result.notes.append(f"{missing} output line(s) had no truth and were left out of the scores")
    if result.n_items == 0:
        result.notes.append("no pair had both an output and a truth mask: pixel scores are empty")
    return result
