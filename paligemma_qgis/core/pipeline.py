"""segment_raster(): raster -> chips -> segmenter -> mosaic -> water polygons (GeoPackage).

The one orchestration every front end calls (CLI, QGIS worker, scripts). Its order is
chosen so that failures are cheap and outputs are all-or-nothing:

1. refuse existing outputs (unless overwrite) before any heavy work;
2. open the raster, build the segmenter, resolve its bands (errors name the file);
3. one decimated whole-scene read gives the 8-bit stretch and the segmenter's ``prepare``
   sample (e.g. the scene's Otsu threshold);
4. a background thread reads chips into a small bounded queue (prefetch while the model
   runs; memory stays flat); chips with too little valid data are skipped and counted;
5. batches go to the segmenter, masks (and with ``valid``) go into the disk-backed mosaic;
   cancellation is checked between batches and leaves no output (temp files removed);
6. the mosaic is vectorised and written as a GeoPackage with layers ``water`` and
   ``chips`` (footprint, status, model text), plus an optional mask GeoTIFF.

Area of interest: chips that do not touch it are never read, and pixels outside it count as
nodata, so polygons are clipped to it.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engine.base import ChipBatch, ChipResult
from .errors import InputError, OutputExistsError
from .mosaic import MAX_COVERAGE
from .progress import Progress, SilentProgress, check_cancelled

_END = object()
GDAL_CACHE_MB = 256  # GDAL block cache during a run (unless GDAL_CACHEMAX is set) ...
GDAL_CACHE_MAX_MB = 1024  # ... raised up to this for very wide rasters (see _block_cache_bytes)


@dataclass
class SegmentOptions:
    """Everything a segmentation run needs; JSON-serialisable (the QGIS worker sends it as JSON)."""

    raster: str
    output: str
    engine: str = "water-index"
    # raster reading
    bands: str | None = None  # RGB rendering bands, "3,2,1" (1-based) or one band for grey
    preset: str | None = None  # sentinel2, landsat89, naip
    green: int | None = None
    nir: int | None = None
    swir: int | None = None
    resolution: float | None = None  # target ground resolution in metres (resampled)
    stretch: tuple[float, float] = (2.0, 98.0)  # percentiles of the scene-wide 8-bit stretch
    on_read_error: str = "fail"  # "skip": unreadable blocks become nodata, counted as read_errors
    # water index engine
    threshold: float | None = None  # None: Otsu over the scene
    index: str = "auto"  # auto (MNDWI when SWIR is known, else NDWI), mndwi, ndwi
    # grid
    overlap: int = 32
    aoi: str | list[float] | None = None  # vector file, or "xmin,ymin,xmax,ymax[,EPSG:x]", or a list
    aoi_crs: str | None = None  # CRS of an extent or list AOI (default: the raster's)
    min_valid_fraction: float = 0.05
    batch_size: int | None = None  # None: the engine's choice (GPU: what memory holds), else 8
    # outputs
    min_area_m2: float = 0.0
    simplify: float = 0.0  # tolerance in raster CRS units
    out_crs: str | None = None
    mask_tif: str | None = None
    overwrite: bool = False
    workdir: str | None = None  # where the mosaic's temp files go (default: system temp)
    # paligemma engine
    model: str | None = None
    vae: str | None = None
    allow_custom_vae: bool = False
    device: str | None = None
    classes: list[str] | None = None
    constrained: bool = True
    max_new_tokens: int | None = None
    max_objects: int | None = None  # per chip (default 8); sets the token budget when max_new_tokens is None
    dtype: str | None = None  # None/auto: bfloat16 on CUDA with native bf16, float32 elsewhere
    cache: str = "dynamic"  # "static": the engine's own loop over a pre-allocated KV cache
    compile: bool = False  # static cache only: torch.compile the decode step (CUDA graphs on CUDA)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentOptions:
        """Options from a JSON object; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown segment option(s): {', '.join(unknown)}")
        missing = [k for k in ("raster", "output") if not data.get(k)]
        if missing:
            raise InputError(f"segment options need {' and '.join(missing)}")
        values = dict(data)
        if isinstance(values.get("bands"), (list, tuple)):
            values["bands"] = ",".join(str(int(b)) for b in values["bands"])
        if values.get("stretch") is not None:
            values["stretch"] = tuple(float(v) for v in values["stretch"])
        if isinstance(values.get("classes"), str):
            values["classes"] = [
                c.strip() for c in values["classes"].replace(";", ",").split(",") if c.strip()
            ]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stretch"] = list(self.stretch)
        return d


@dataclass
class SegmentSummary:
    """What a run did; ``to_dict`` is what the worker sends back to QGIS."""

    chips: int  # chips segmented
    skipped: int  # chips skipped for too little valid data
    water_area_km2: float  # summed area of the output polygons
    seconds: float
    chips_per_s: float  # chips / seconds (whole run)
    output: str
    polygons: int = 0
    mask_tif: str | None = None
    engine: str = ""
    device: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def one_line(self) -> str:
        return (
            f"{self.chips} chips ({self.skipped} skipped), {self.polygons} polygons, "
            f"water {self.water_area_km2:.4f} km2, {self.seconds:.1f} s, {self.chips_per_s:.1f} chips/s"
            + (f", device {self.device}" if self.device else "")
        )


def _check_outputs(options: SegmentOptions) -> tuple[Path, Path | None]:
    raster = Path(options.raster)
    out = Path(options.output)
    if out.suffix.lower() != ".gpkg":
        raise InputError(f"{out}: output must be a GeoPackage (.gpkg)")
    mask = Path(options.mask_tif) if options.mask_tif else None
    for p in (out, mask):
        if p is None:
            continue
        if raster.exists() and p.exists() and p.resolve() == raster.resolve():
            raise InputError(f"{p}: output would overwrite the input raster")
        if p.exists() and not options.overwrite:
            raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
        if p.exists() and p.is_dir():
            raise InputError(f"{p}: output is a folder")
        _check_writable(p)
    if mask is not None and mask.resolve() == out.resolve():
        raise InputError(f"{out}: the mask GeoTIFF and the GeoPackage must be different files")
    return out, mask


def _check_writable(path: Path) -> None:
    """Fail before the work, not after it, when the output folder cannot take a file."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot write to {path.parent} ({exc.strerror or exc})") from None


def _engine_options(options: SegmentOptions, roles: dict[str, int]) -> dict[str, Any]:
    return {
        "green": roles.get("green"),
        "nir": roles.get("nir"),
        "swir": roles.get("swir"),
        "threshold": options.threshold,
        "index": options.index,
        "model": options.model,
        "vae": options.vae,
        "allow_custom_vae": options.allow_custom_vae,
        "device": options.device,
        "batch_size": options.batch_size,
        "classes": options.classes,
        "constrained": options.constrained,
        "max_new_tokens": options.max_new_tokens,
        "max_objects": options.max_objects,
        "dtype": options.dtype,
        "cache": options.cache,
        "compile": options.compile,
    }


def run_record(options: SegmentOptions, segmenter: Any, *, raster: Any, crs: Any, **facts: Any) -> Any:
    """The ``run`` table: how the layer was made (options, engine, model, device, counts).

    Key/value rows of text, so that months later an analyst can tell which model, prompt
    and settings drew these polygons, in QGIS or with any SQLite tool.
    """
    import datetime
    import json

    import pandas as pd

    from .. import __version__

    rows: list[tuple[str, Any]] = [
        ("tool", f"paligemma_qgis {__version__}"),
        ("created_utc", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
        ("raster", str(raster)),
        ("raster_crs", crs.to_string() if crs is not None else ""),
        ("engine", getattr(segmenter, "name", options.engine)),
        ("device", str(getattr(segmenter, "device", "") or "")),
    ]
    rows += [(f"engine.{k}", v) for k, v in _describe(segmenter).items()]
    rows += [(k, v) for k, v in facts.items()]
    rows += [(f"option.{k}", v) for k, v in options.to_dict().items() if v is not None]

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return value if isinstance(value, str) else json.dumps(value, default=str)

    return pd.DataFrame({"key": [k for k, _ in rows], "value": [text(v) for _, v in rows]})


def _back_to_window(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Undo a nearest resample of an (h, w) window to a (size, size) chip, pixel for pixel.

    GDAL's nearest takes source row floor((i + 0.5) * h / size) for chip row i; picking
    chip row floor((r + 0.5) * size / h) for source row r lands back on r exactly.
    """
    size_h, size_w = arr.shape
    rows = ((np.arange(h) + 0.5) * size_h / h).astype(np.int64)
    cols = ((np.arange(w) + 0.5) * size_w / w).astype(np.int64)
    return arr[np.ix_(rows, cols)]


def _max_chips_per_pixel(width: int, height: int, size: int, overlap: int) -> int:
    """Most chips over any one pixel: the product of the two axes' maxima (the grid is separable)."""
    from .grid import axis_offsets

    most = 1
    for dim in (width, height):
        count = np.zeros(dim + 1, np.int64)
        for off in axis_offsets(dim, size, overlap):
            count[off] += 1
            count[min(off + size, dim)] -= 1
        most *= int(np.cumsum(count).max())
    return most


def _split_chips(chips: list, width: int, height: int, block: tuple[int, int], parts: int) -> list[list]:
    """Chips in ``parts`` groups, one per reading thread, cut along storage-block boundaries.

    Tiled files are cut into column bands at tile edges, so the threads decode disjoint
    tiles of the same tile rows (the block cache holds the same two tile rows as with one
    reader); files stored in full-width strips are cut into row bands instead. Only chips
    straddling a cut make a block be decoded twice. Order within a group is kept.
    """
    if parts <= 1 or len(chips) < 2:
        return [chips]
    block_rows, block_cols = block
    by_cols = block_cols * 2 <= width
    dim, unit = (width, block_cols) if by_cols else (height, block_rows)
    unit = max(1, unit)
    cuts = sorted({round(dim * k / parts / unit) * unit for k in range(1, parts)} - {0, dim})
    groups: list[list] = [[] for _ in range(len(cuts) + 1)]
    for chip in chips:
        w = chip.window
        centre = (w.col_off + w.width / 2) if by_cols else (w.row_off + w.height / 2)
        groups[bisect.bisect_right(cuts, centre)].append(chip)
    return [g for g in groups if g]


def _block_cache_bytes(src: Any, size: int) -> int:
    """GDAL block cache that holds every storage-block row a chip row needs, plus one.

    A chip row straddles up to ceil(size / block rows) + 1 block rows, and the next chip row
    reuses the lower ones: when they do not fit, every tile is decoded two or three times
    (at 4 uint16 bands and 512 px tiles that starts at about 30 000 px wide with 256 MB).
    """
    rows = max(1, min(src.block_shape[0], src.height))
    row_bytes = src.width * rows * src.count * np.dtype(src.dtype).itemsize
    need = (-(-size // rows) + 2) * row_bytes
    return int(min(max(need, GDAL_CACHE_MB << 20), GDAL_CACHE_MAX_MB << 20))


def _reader_threads() -> int:
    """Reading threads: two where there are two cores (decoding tiles is most of the work)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


class _ChipReader:
    """Reads chips on background threads into a bounded queue (prefetch while the model runs).

    Decoding compressed tiles dominates the non-model time, and one GDAL handle must not be
    used from two threads, so with ``workers > 1`` every thread reads its own share of the
    chips (see ``_split_chips``) through its own ``src.clone()``. Chips then arrive out of
    id order; everything downstream is order-free (mosaic counts, records sorted by id).
    """

    def __init__(
        self, src: Any, chips: list, raw_bands: list[int], size: int, aoi: Any, depth: int, workers: int = 1
    ):
        self.src, self.raw_bands, self.size, self.aoi = src, raw_bands, size, aoi
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, depth))
        self.stop = threading.Event()
        groups = _split_chips(chips, src.width, src.height, src.block_shape, workers)
        self.sources: list[Any] = [src]
        try:
            for _ in groups[1:]:
                self.sources.append(src.clone())
        except BaseException:
            self._close_clones()
            raise
        self.threads = [
            threading.Thread(target=self._run, args=(s, g), name=f"chip-reader-{i}", daemon=True)
            for i, (s, g) in enumerate(zip(self.sources, groups, strict=True))
        ]

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _aoi_mask(self, chip: Any, shape: tuple[int, int]) -> np.ndarray | None:
        if self.aoi is None:
            return None
        import shapely
        from rasterio.features import geometry_mask
        from rasterio.windows import transform as window_transform

        from .grid import window_footprint

        footprint = window_footprint(chip.window, self.src.transform)
        if self.aoi.contains(footprint):
            return None
        if not shapely.intersects(self.aoi, footprint):
            return np.zeros(shape, bool)
        h, w = int(chip.window.height), int(chip.window.width)
        t = window_transform(chip.window, self.src.transform)
        if (h, w) != shape:
            from affine import Affine

            t = t * Affine.scale(w / shape[1], h / shape[0])
        return geometry_mask([self.aoi], out_shape=shape, transform=t, invert=True)

    def _run(self, src: Any, chips: list) -> None:
        try:
            for chip in chips:
                if self.stop.is_set():
                    return
                out_shape = None if chip.full_size else (self.size, self.size)
                raw, rgb, valid = src.read_chip(chip.window, self.raw_bands, out_shape=out_shape)
                fraction = float(valid.mean())  # raster validity, before the AOI clip
                inside = self._aoi_mask(chip, valid.shape)
                if inside is not None:
                    valid = valid & inside
                    raw[:, ~valid] = np.nan
                    rgb[~valid] = 0
                if not self._put((chip, raw, rgb, valid, fraction)):
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)
        finally:
            self._put(_END)

    def __enter__(self) -> _ChipReader:
        for t in self.threads:
            t.start()
        return self

    def __iter__(self):
        running = len(self.threads)
        while running:
            item = self.queue.get()
            if item is _END:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            yield item

    def _close_clones(self) -> None:
        for s in self.sources[1:]:
            s.close()
        del self.sources[1:]

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        if not any(t.is_alive() for t in self.threads):
            self._close_clones()


def _describe(segmenter: Any) -> dict[str, Any]:
    fn = getattr(segmenter, "describe", None)
    try:
        return dict(fn()) if callable(fn) else {}
    except Exception:  # a summary must never fail a finished run
        return {}


def segment_raster(
    options: SegmentOptions, progress: Progress | None = None, segmenter: Any = None
) -> SegmentSummary:
    """Map water in ``options.raster`` and write ``options.output``; see the module docstring.

    ``segmenter``: an already built Segmenter (tests, or a model kept loaded across runs);
    default: ``make_segmenter(options.engine, ...)``. Raises core.errors for bad input,
    progress.Cancelled when cancelled (no output is left behind).
    """
    from .engine.factory import make_segmenter
    from .grid import aoi_coarse_mask, chip_windows, load_aoi
    from .mosaic import Mosaic
    from .raster import open_raster
    from .vectorize import chips_frame, vectorize_mosaic, write_geopackage

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    if isinstance(options, dict):
        options = SegmentOptions.from_dict(options)
    out, mask_path = _check_outputs(options)
    if options.batch_size is not None and options.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {options.batch_size}")
    if not 0 <= options.min_valid_fraction <= 1:
        raise InputError(f"min valid fraction must be in [0, 1], got {options.min_valid_fraction}")
    if options.out_crs:
        import pyproj

        try:
            pyproj.CRS.from_user_input(options.out_crs)
        except pyproj.exceptions.CRSError:
            raise InputError(f"{options.out_crs}: unknown output CRS (use e.g. EPSG:4326)") from None
    progress.report(0, 1, "opening raster")

    import rasterio

    # GDAL's block cache defaults to 5% of RAM; a few tile rows are all a chip row needs.
    cache = None if os.environ.get("GDAL_CACHEMAX") else GDAL_CACHE_MB * 2**20
    with (
        rasterio.Env(**({"GDAL_CACHEMAX": cache} if cache else {})),
        open_raster(
            options.raster,
            bands=options.bands,
            preset=options.preset,
            resolution=options.resolution,
            stretch=options.stretch,
            green=options.green,
            nir=options.nir,
            swir=options.swir,
            on_read_error=options.on_read_error,
        ) as src,
    ):
        if segmenter is None:
            progress.report(0, 1, f"loading {options.engine} engine")
            segmenter = make_segmenter(options.engine, **_engine_options(options, src.band_roles))
        try:
            raw_bands = [int(b) for b in segmenter.bands_needed(src.raster_bands)]
        except InputError as exc:
            raise InputError(f"{src.path}: {exc}") from None
        for b in raw_bands:
            if not 1 <= b <= src.count:
                raise InputError(f"{src.path}: band {b} does not exist (the raster has {src.count} bands)")
        size = int(segmenter.chip_size)
        batch_size = int(options.batch_size or getattr(segmenter, "batch_size", None) or 8)
        if not 0 <= options.overlap < size:
            raise InputError(f"overlap must be between 0 and {size - 1} pixels, got {options.overlap}")
        stack = _max_chips_per_pixel(src.width, src.height, size, options.overlap)
        if stack > MAX_COVERAGE:
            raise InputError(
                f"overlap {options.overlap} is too large: {stack} chips would cover one pixel "
                f"(at most {MAX_COVERAGE}); use an overlap below about {size // 2}"
            )
        if options.simplify > 0 and src.crs.is_geographic and options.simplify > 100 * abs(src.res[0]):
            raise InputError(
                f"{src.path}: simplify tolerance {options.simplify} is in degrees for this raster "
                f"({src.crs}), over 100 pixels; a tolerance in metres needs a projected raster"
            )

        aoi = aoi_mask = None
        if options.aoi is not None and options.aoi != "":
            aoi = load_aoi(options.aoi, src.crs, options.aoi_crs)
            aoi_mask = aoi_coarse_mask(aoi, src.transform, src.width, src.height)
        chips = chip_windows(src.width, src.height, size, options.overlap, aoi_mask=aoi_mask)
        if not chips:
            raise InputError(f"{options.aoi}: the area of interest does not overlap {src.path}")
        check_cancelled(progress)

        progress.report(0, len(chips), "reading scene statistics")
        raw, rgb, valid = src.read_sample(raw_bands)
        if not valid.any():
            raise InputError(f"{src.path}: the raster has no valid pixels (all nodata)")
        segmenter.prepare(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[-1]))
        del raw, rgb, valid
        check_cancelled(progress)

        records: list[dict[str, Any]] = []
        n_done = n_skipped = 0
        total = len(chips)
        t_chips = time.perf_counter()
        wide = cache is not None and _block_cache_bytes(src, size) > cache
        with (
            rasterio.Env(**({"GDAL_CACHEMAX": _block_cache_bytes(src, size)} if wide else {})),
            Mosaic(src.width, src.height, src.transform, src.crs, workdir=options.workdir) as mosaic,
            _ChipReader(
                src, chips, raw_bands, size, aoi, depth=2 * batch_size, workers=_reader_threads()
            ) as reader,
        ):
            batch: list[tuple] = []

            def run_batch() -> None:
                results = segmenter.segment(
                    ChipBatch(
                        raw=np.stack([b[1] for b in batch]),
                        rgb=np.stack([b[2] for b in batch]),
                        valid=np.stack([b[3] for b in batch]),
                        ids=[b[0].id for b in batch],
                    )
                )
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"{segmenter.name} returned {len(results)} results for {len(batch)} chips"
                    )
                for (chip, _, _, valid, _), res in zip(batch, results, strict=True):
                    _add_result(mosaic, chip, res, valid, size, records)
                batch.clear()

            for item in reader:
                chip, _, _, _, fraction = item
                if fraction < options.min_valid_fraction or fraction == 0:
                    n_skipped += 1
                    records.append(
                        dict(
                            chip_id=chip.id,
                            window=chip.window,
                            status=f"skipped: {fraction:.1%} valid",
                            text=None,
                        )
                    )
                    if n_skipped % 64 == 0:
                        check_cancelled(progress)
                        progress.report(n_done + n_skipped, total, "segmenting chips")
                    continue
                batch.append(item)
                if len(batch) >= batch_size:
                    n_done += len(batch)
                    run_batch()
                    progress.report(n_done + n_skipped, total, "segmenting chips")
                    check_cancelled(progress)
            if batch:
                n_done += len(batch)
                run_batch()
            progress.report(total, total, "segmenting chips")
            check_cancelled(progress)
            chip_seconds = time.perf_counter() - t_chips
            read_errors = src.read_errors

            water = vectorize_mosaic(
                mosaic,
                simplify=options.simplify,
                min_area_m2=options.min_area_m2,
                out_crs=options.out_crs,
                progress=progress,
            )
            records.sort(key=lambda r: r["chip_id"])
            chips_layer = chips_frame(records, src.transform, src.crs)
            check_cancelled(progress)
            progress.report(0, 1, "writing GeoPackage")
            run = run_record(
                options,
                segmenter,
                raster=src.path,
                crs=src.crs,
                chips=n_done,
                skipped=n_skipped,
                chip_seconds=chip_seconds,
                batch_size=batch_size,
                read_errors=src.read_errors,
            )
            write_geopackage(
                out, {"water": water, "chips": chips_layer, "run": run}, overwrite=options.overwrite
            )
            if mask_path is not None:
                progress.report(0, 1, "writing mask GeoTIFF")
                mosaic.write_mask_tif(mask_path, overwrite=options.overwrite)
            progress.report(1, 1, "done")

    seconds = time.perf_counter() - t0
    device = getattr(segmenter, "device", None)
    details = _describe(segmenter)
    details["chip_seconds"] = round(chip_seconds, 3)
    details["chip_size"] = size
    details["read_errors"] = read_errors
    return SegmentSummary(
        chips=n_done,
        skipped=n_skipped,
        water_area_km2=float(water["area_m2"].sum()) / 1e6 if len(water) else 0.0,
        seconds=seconds,
        chips_per_s=n_done / seconds if seconds > 0 else 0.0,
        output=str(out),
        polygons=len(water),
        mask_tif=str(mask_path) if mask_path else None,
        engine=getattr(segmenter, "name", options.engine),
        device=None if device is None else str(device),
        details=details,
    )


def _add_result(
    mosaic: Any, chip: Any, res: ChipResult, valid: np.ndarray, size: int, records: list[dict[str, Any]]
) -> None:
    water = np.asarray(res.water, dtype=bool)
    if water.shape != valid.shape:
        raise RuntimeError(f"segmenter returned a {water.shape} mask for a {valid.shape} chip {chip.id}")
    water = water & valid
    h, w = int(chip.window.height), int(chip.window.width)
    if (h, w) != valid.shape:  # a raster smaller than a chip, read resampled
        water, valid = _back_to_window(water, h, w), _back_to_window(valid, h, w)
    mosaic.add(chip.window, water, valid)
    records.append(
        dict(
            chip_id=chip.id,
            window=chip.window,
            status=res.status,
            text=res.text,
            n_objects=len(res.objects or []),
        )
    )
