"""Pixel-level scores of predicted water against known water, plus how often the model's text
was invalid.

Two cases:

- Georeferenced: PRED is a vector file (the ``water`` layer of ``segment``'s GeoPackage) or
  a mask raster (``segment --mask-tif``), TRUTH a vector file or mask raster. Both are
  rasterised (pixel-centre rule) on one reference grid (``--raster REF``, else the truth
  raster's grid) block by block, so a large scene never sits in memory. Only pixels that
  are valid in the reference raster, labelled in the truth (not its nodata, nor
  ``truth_nodata``: Sen1Floods11 labels mark "unknown" with -1) and with a prediction
  (inside a chip the model saw, or not the prediction mask's nodata) count; the left-out
  truth and prediction nodata are reported. No pixel left means the two do not overlap:
  an error, never a score of nothing.
- Pairs: PRED is a JSONL of model outputs (``{"image", "model_output"}``; ``prediction``,
  ``output``, ``text`` or ``suffix`` also read), TRUTH a folder of same-named masks (grey
  > ``mask_threshold``) or a JSONL with truth suffixes (decoded with the codec on the sizes of
  ``images``). Outputs are parsed with core.model.tokens; accepted objects are decoded with the
  VQ-VAE and pasted at the truth's size.

Scores are micro-averaged (pixel counts summed over the whole scene or all pairs); the
invalid share counts outputs (chips or lines) with at least one rejected object. An empty
output is valid: it says "no water".

One file because both cases share the scores, the result and the model-text counting; the
georeferenced half is the first to move out (evaluate_geo and its grid readers) if it grows.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..inputs.files import (
    check_finite_geometries,
    image_size,
    list_layers,
    open_raster_dataset,
    probe_raster,
    read_vectors,
    reading,
    require_exists,
)
from ..progress import Progress, check_cancelled

OUTPUT_KEYS = ("model_output", "prediction", "output", "text", "suffix")
_VECTOR_EXTS = {".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite"}
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

    def to_dict(self) -> dict[str, Any]:
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

    def to_dict(self) -> dict[str, Any]:
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


def _count_outputs(result: EvalResult, texts: list[str | None]) -> None:
    from ..model.tokens import parse_segmentation

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


def _count_statuses(result: EvalResult, statuses: list[str]) -> None:
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


def decode_text_mask(codec: Any, text: str, height: int, width: int) -> np.ndarray:
    """Accepted objects of a model output, decoded and pasted at (height, width)."""
    from ..model.masks import paste_masks
    from ..model.tokens import parse_segmentation

    objs = [o for o in parse_segmentation(text) if o.accepted and o.codes is not None]
    if not objs:
        return np.zeros((height, width), bool)
    decoded = codec.decode(np.array([o.codes for o in objs], dtype=np.int64))
    return np.asarray(paste_masks(objs, decoded, height, width)).astype(bool)


# --------------------------------------------------------------------------- pairs


def _read_jsonl(path: Path) -> list[dict]:
    from ..inputs.files import read_jsonl

    return [rec for _, rec in read_jsonl(path, ("image",))]


def _output_text(rec: dict, path: Path) -> str:
    for k in OUTPUT_KEYS:
        if k in rec:
            v = rec[k]
            return v if isinstance(v, str) else ""
    raise InputError(f"{path}: line for {rec.get('image')!r} has none of the keys {', '.join(OUTPUT_KEYS)}")


def _find_image(folder: Path, name: str) -> Path | None:
    p = folder / name
    if p.is_file():
        return p
    for cand in folder.glob(Path(name).stem + ".*"):
        return cand
    return None


def evaluate_pairs(
    pred: str | Path,
    truth: str | Path,
    *,
    images: str | Path | None = None,
    vae: str | None = None,
    allow_custom_vae: bool = False,
    mask_threshold: int = 150,
    codec: Any = None,
    allow_large_images: bool = False,
    progress: Progress | None = None,
) -> EvalResult:
    """Model outputs (JSONL) vs a folder of truth masks or a JSONL of truth suffixes."""
    from .export import binarise_mask_image

    pred, truth = Path(pred), Path(truth)
    records = _read_jsonl(pred)
    result = EvalResult(mode="pairs", scores=Scores())
    texts: list[str | None] = [_output_text(r, pred) for r in records]
    _count_outputs(result, texts)

    def get_codec() -> Any:
        nonlocal codec
        if codec is None:
            from .export import load_codec

            codec = load_codec(vae, allow_custom_vae)
        return codec

    truth_suffix: dict[str, str] | None = None
    if truth.is_file() and truth.suffix.lower() == ".jsonl":
        truth_suffix = {Path(r["image"]).stem: str(r.get("suffix", "")) for r in _read_jsonl(truth)}
        images = Path(images) if images else truth.parent / "images"
        if not images.is_dir():
            raise InputError(f"{images}: images folder not found (needed for the sizes of truth JSONL pairs)")
    elif not truth.is_dir():
        raise InputError(f"{truth}: truth must be a folder of masks or a JSONL with 'suffix'")
    missing = 0
    for i, (rec, text) in enumerate(zip(records, texts, strict=True)):
        check_cancelled(progress)
        name = str(rec["image"])
        if truth_suffix is not None:
            img = _find_image(Path(images), name)  # type: ignore[arg-type]
            if Path(name).stem not in truth_suffix or img is None:
                missing += 1
                continue
            w, h = image_size(img, "image", allow_large=allow_large_images)
            t_text = truth_suffix[Path(name).stem]
            t_mask = decode_text_mask(get_codec(), t_text, h, w) if t_text.strip() else np.zeros((h, w), bool)
        else:
            mpath = _find_image(truth, name)
            if mpath is None:
                missing += 1
                continue
            t_mask = binarise_mask_image(mpath, mask_threshold, allow_large=allow_large_images)
            h, w = t_mask.shape
        text = text or ""
        needs_codec = any(o.accepted and o.codes is not None for o in _parse(text))
        p_mask = decode_text_mask(get_codec(), text, h, w) if needs_codec else np.zeros((h, w), bool)
        result.scores.add(p_mask, t_mask)
        result.pixels_evaluated += h * w
        result.n_items += 1
        if progress is not None:
            progress.report(i + 1, len(records), name)
    if missing:
        result.notes.append(f"{missing} output line(s) had no truth and were left out of the scores")
    if result.n_items == 0:
        result.notes.append("no pair had both an output and a truth mask: pixel scores are empty")
    return result


def _parse(text: str) -> list:
    from ..model.tokens import parse_segmentation

    return parse_segmentation(text)


# --------------------------------------------------------------------------- georeferenced


class _Grid:
    """The reference grid: CRS, transform, size, and a per-window validity reader."""

    def __init__(self, path: Path) -> None:
        from rasterio.enums import ColorInterp

        self.path = path
        self.ds = open_raster_dataset(path, "reference raster")
        if self.ds.crs is None:
            self.ds.close()
            raise InputError(f"{path}: reference raster has no CRS")
        self.crs, self.transform = self.ds.crs, self.ds.transform
        self.width, self.height = self.ds.width, self.ds.height
        self.note = None
        if self.ds.nodata is not None and ColorInterp.alpha in self.ds.colorinterp:
            self.note = (
                f"{path}: has both a nodata value and an alpha band; valid pixels follow the nodata value"
            )

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        from ..inputs.raster import ordered_bounds

        b = ordered_bounds(self.ds)
        return (b[0], b[1], b[2], b[3])

    def valid(self, window: Any) -> np.ndarray:
        from rasterio.errors import NodataShadowWarning

        with reading(self.path, "reference raster", window=window), warnings.catch_warnings():
            # nodata and an alpha band: GDAL uses the nodata value (said once, in notes)
            warnings.simplefilter("ignore", NodataShadowWarning)
            return self.ds.dataset_mask(window=window) > 0

    def close(self) -> None:
        self.ds.close()


class _MaskOnGrid:
    """A mask raster (truth, or a segment --mask-tif prediction) warped onto the reference grid.

    Water where value > ``threshold``; labelled where the file has data: not its declared
    nodata, not ``extra_nodata`` (e.g. -1 in Sen1Floods11 labels), not NaN, inside its extent.
    """

    def __init__(
        self, path: Path, what: str, grid: _Grid, threshold: float, extra_nodata: float | None = None
    ) -> None:
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self.path, self.what, self.threshold, self.extra_nodata = path, what, threshold, extra_nodata
        self.ds = open_raster_dataset(path, what)
        try:
            if self.ds.crs is None:
                raise InputError(f"{path}: {what} has no CRS")
            dtype = np.dtype(self.ds.dtypes[0])
            if extra_nodata is not None and dtype.kind in "ui":
                info = np.iinfo(dtype)
                if not info.min <= extra_nodata <= info.max:
                    raise InputError(
                        f"{path}: nodata value {extra_nodata:g} cannot occur in this {dtype} {what} "
                        f"(values {info.min} to {info.max}); check --truth-nodata"
                    )
            self.declared_nodata = self.ds.nodata
            kw: dict[str, Any] = dict(
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=Resampling.nearest,
            )
            if self.ds.nodata is not None:
                kw.update(src_nodata=self.ds.nodata, nodata=self.ds.nodata)
            else:
                kw["add_alpha"] = True
            with reading(path, what):
                self.vrt = WarpedVRT(self.ds, **kw)
        except BaseException:
            self.ds.close()
            raise

    def read(self, win: Any) -> tuple[np.ndarray, np.ndarray]:
        """(water, labelled) on the grid window."""
        with reading(self.path, self.what, window=win):
            if self.vrt.count > self.ds.count:  # added alpha
                data = self.vrt.read([1, self.vrt.count], window=win)
                values, labelled = data[0].astype(np.float64), data[1] > 0
            else:
                values = self.vrt.read(1, window=win).astype(np.float64)
                labelled = self.vrt.read_masks(1, window=win) > 0
        labelled &= np.isfinite(values)
        if self.extra_nodata is not None:
            labelled &= values != self.extra_nodata
        return (values > self.threshold) & labelled, labelled

    def close(self) -> None:
        self.vrt.close()
        self.ds.close()


def _polys(gdf: Any, crs: Any, path: Path, what: str) -> tuple[np.ndarray, int]:
    """Polygons of ``gdf`` in ``crs``, invalid ones repaired; (geometries, number repaired)."""
    import shapely

    if gdf is None or not len(gdf):
        return np.empty(0, dtype=object), 0
    gdf = gdf[gdf.geometry.notna()]
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if not len(gdf):
        return np.empty(0, dtype=object), 0
    geoms = np.asarray(gdf.to_crs(crs).geometry.values, dtype=object)
    check_finite_geometries(geoms, path, what, gdf.crs)
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
    return geoms, int(invalid.sum())


def _overlaps(geoms: np.ndarray, bounds: tuple[float, float, float, float]) -> bool:
    import shapely
    from shapely.geometry import box

    return bool(len(geoms)) and bool(shapely.intersects(geoms, box(*bounds)).any())


def _rasterize(geoms: np.ndarray | None, tree: Any, window: Any, grid: _Grid) -> np.ndarray:
    from rasterio import features
    from rasterio.windows import bounds
    from rasterio.windows import transform as wtransform
    from shapely.geometry import box

    shape = (int(window.height), int(window.width))
    if geoms is None or not len(geoms):
        return np.zeros(shape, bool)
    hits = tree.query(box(*bounds(window, grid.transform)))
    if not len(hits):
        return np.zeros(shape, bool)
    return features.rasterize(
        [(g, 1) for g in geoms[hits]],
        out_shape=shape,
        transform=wtransform(window, grid.transform),
        dtype="uint8",
    ).astype(bool)


def _is_vector_name(path: Path) -> bool:
    return path.suffix.lower() in _VECTOR_EXTS


def evaluate_geo(
    pred: str | Path,
    truth: str | Path,
    *,
    raster: str | Path | None = None,
    pred_layer: str | None = "water",
    truth_layer: str | None = None,
    truth_where: str | None = None,
    mask_threshold: float = 0.0,
    truth_nodata: float | None = None,
    block: int = 2048,
    progress: Progress | None = None,
) -> EvalResult:
    """Predicted water (polygons, or a mask raster) vs truth polygons or a truth mask, on a grid.

    Pixels are scored only where the reference raster has data, the truth is labelled (not its
    nodata, nor ``truth_nodata``) and the prediction has data (inside a chip the model saw, or
    not the prediction mask's nodata); the excluded pixels are counted in the result. When no
    pixel is left the two do not overlap: an InputError, not a score of nothing.
    """
    import shapely
    from rasterio.windows import Window

    pred, truth = Path(pred), Path(truth)
    result = EvalResult(mode="raster", scores=Scores(), n_items=1)
    require_exists(pred, "prediction")
    require_exists(truth, "truth")
    pred_is_raster = not _is_vector_name(pred) and probe_raster(pred)
    truth_is_raster = not _is_vector_name(truth) and probe_raster(truth)
    if truth_nodata is not None and not truth_is_raster:
        raise InputError(f"{truth}: --truth-nodata applies to a truth mask raster, not to vectors")
    pred_gdf = chips_gdf = None
    if not pred_is_raster:
        layers = list_layers(pred, "prediction") if pred.suffix.lower() == ".gpkg" else []
        if layers and pred_layer not in layers:
            if len(layers) == 1:
                pred_layer = layers[0]
            else:
                raise InputError(f"{pred}: no layer {pred_layer!r} (layers: {', '.join(layers)})")
        pred_gdf = read_vectors(pred, "prediction", layer=pred_layer if layers else None)
        chips_gdf = read_vectors(pred, "chips", layer="chips") if "chips" in layers else None
    if chips_gdf is not None:
        # Model text when the chips have it; a water-index run has none (no outputs to judge).
        if "text" in chips_gdf.columns:
            texts = list(chips_gdf["text"])
            _count_outputs(result, [t if isinstance(t, str) else None for t in texts])
        elif "status" in chips_gdf.columns:
            _count_statuses(result, [str(s) for s in chips_gdf["status"]])
        if "status" in chips_gdf.columns:  # chips the model never saw are no prediction
            chips_gdf = chips_gdf[~chips_gdf["status"].astype(str).str.startswith("skipped")]

    if raster is None and not truth_is_raster:
        if not _is_vector_name(truth):
            open_raster_dataset(truth, "truth mask").close()  # says why it is no raster
        raise InputError(f"{truth}: a vector truth needs a reference grid: pass --raster REF")
    grid = _Grid(Path(raster) if raster is not None else truth)
    if grid.note:
        result.notes.append(grid.note)
    truth_mask = pred_mask = None
    try:
        if pred_is_raster:
            pred_mask = _MaskOnGrid(pred, "prediction mask", grid, 0.0)
            pred_geoms = pred_tree = None
        else:
            pred_geoms, n_fixed = _polys(pred_gdf, grid.crs, pred, "prediction polygons")
            if n_fixed:
                result.notes.append(f"{pred}: {n_fixed} invalid prediction polygon(s) repaired")
            pred_tree = shapely.STRtree(pred_geoms)
        chip_geoms, _ = _polys(chips_gdf, grid.crs, pred, "chips") if chips_gdf is not None else (None, 0)
        chip_tree = shapely.STRtree(chip_geoms) if chip_geoms is not None else None
        if chip_geoms is not None and not _overlaps(chip_geoms, grid.bounds):
            raise InputError(f"{pred}: no chip of the prediction overlaps the reference grid {grid.path}")
        if (
            chip_geoms is None
            and pred_geoms is not None
            and len(pred_geoms)
            and not _overlaps(pred_geoms, grid.bounds)
        ):
            raise InputError(f"{pred}: the predicted water lies outside the reference grid {grid.path}")
        if truth_is_raster:
            truth_mask = _MaskOnGrid(truth, "truth mask", grid, mask_threshold, truth_nodata)
            truth_geoms = truth_tree = None
        else:
            truth_gdf = read_vectors(truth, "truth", layer=truth_layer, where=truth_where)
            truth_geoms, n_fixed = _polys(truth_gdf, grid.crs, truth, "truth polygons")
            if n_fixed:
                result.notes.append(f"{truth}: {n_fixed} invalid truth polygon(s) repaired (make_valid)")
            if not len(truth_geoms):
                result.notes.append(f"{truth}: truth holds no water polygons")
            elif not _overlaps(truth_geoms, grid.bounds):
                raise InputError(f"{truth}: the truth polygons lie outside the reference grid {grid.path}")
            truth_tree = shapely.STRtree(truth_geoms)
        windows = [
            Window(c, r, min(block, grid.width - c), min(block, grid.height - r))
            for r in range(0, grid.height, block)
            for c in range(0, grid.width, block)
        ]
        for i, win in enumerate(windows):
            check_cancelled(progress)
            shape = (int(win.height), int(win.width))
            base = grid.valid(win) if raster is not None else np.ones(shape, bool)
            if truth_mask is not None:
                t_mask, t_labelled = truth_mask.read(win)
            else:
                t_mask, t_labelled = _rasterize(truth_geoms, truth_tree, win, grid), np.ones(shape, bool)
            if pred_mask is not None:
                p_mask, p_covered = pred_mask.read(win)
            else:
                p_mask = _rasterize(pred_geoms, pred_tree, win, grid)
                p_covered = (
                    _rasterize(chip_geoms, chip_tree, win, grid)
                    if chip_tree is not None
                    else np.ones(shape, bool)
                )
            result.truth_nodata_pixels += int(np.count_nonzero(base & ~t_labelled))
            result.pred_nodata_pixels += int(np.count_nonzero(base & t_labelled & ~p_covered))
            domain = base & t_labelled & p_covered
            result.scores.add(p_mask, t_mask, domain)
            result.pixels_evaluated += int(domain.sum())
            if progress is not None:
                progress.report(i + 1, len(windows), "scoring")
    finally:
        for m in (truth_mask, pred_mask):
            if m is not None:
                m.close()
        grid.close()
    if result.pixels_evaluated == 0:
        raise InputError(
            f"{pred}: no pixel has data in both the prediction and the truth {truth} "
            f"({result.truth_nodata_pixels} truth nodata, {result.pred_nodata_pixels} prediction nodata "
            "pixels); do they cover the same place?"
        )
    return result


def evaluate(
    pred: str | Path,
    truth: str | Path,
    *,
    raster: str | Path | None = None,
    images: str | Path | None = None,
    vae: str | None = None,
    allow_custom_vae: bool = False,
    pred_layer: str | None = "water",
    truth_layer: str | None = None,
    truth_where: str | None = None,
    mask_threshold: float | None = None,
    truth_nodata: float | None = None,
    allow_large_images: bool = False,
    progress: Progress | None = None,
) -> EvalResult:
    """Dispatch on PRED: a ``.jsonl`` of model outputs -> pairs, anything else -> georeferenced."""
    pred = Path(pred)
    if not pred.exists():
        raise InputError(f"{pred}: prediction file not found")
    if not Path(truth).exists():
        raise InputError(f"{truth}: truth not found")
    if pred.suffix.lower() == ".jsonl":
        return evaluate_pairs(
            pred,
            truth,
            images=images,
            vae=vae,
            allow_custom_vae=allow_custom_vae,
            mask_threshold=150 if mask_threshold is None else int(mask_threshold),
            allow_large_images=allow_large_images,
            progress=progress,
        )
    return evaluate_geo(
        pred,
        truth,
        raster=raster,
        pred_layer=pred_layer,
        truth_layer=truth_layer,
        truth_where=truth_where,
        mask_threshold=0.0 if mask_threshold is None else float(mask_threshold),
        truth_nodata=truth_nodata,
        progress=progress,
    )
