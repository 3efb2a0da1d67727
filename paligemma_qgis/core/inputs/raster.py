"""Windowed raster reading: band selection, band roles, nodata, one scene-wide 8-bit stretch.

Why it looks like this:

- Only windows are read (plus one decimated read of the whole scene for statistics), so a
  20000 x 20000 scene costs what a chip costs.
- 16-bit and float imagery is stretched to 8 bits with per-band percentiles computed *once
  per scene* over valid pixels: per-chip stretching makes seams and turns a calm lake into
  noise.
- A pixel is valid when *any* band read has data (GDAL's dataset-mask rule), so a black
  NIR value over water is data, not nodata. Alpha bands and internal masks are honoured; NaN
  never counts as data. Invalid pixels are NaN in ``raw`` and 0 in ``rgb``. The bands read
  are what the engine uses: the RGB rendering bands for a model, only the index bands for
  a water index (which gets no rendering and no stretch).
- Band roles (green, nir, swir, ...) come, in this order, from explicit overrides, from the
  file's own band descriptions (``"nir"``, ``"B8"`` in a Sentinel-2 file), and from a preset's
  assumed band order: a file that names its bands is trusted over a guess.
- A read that fails (a truncated or corrupt file) names the file and the window. With
  ``on_read_error="skip"`` the window is read again piece by piece (storage blocks, or a grid
  of pieces for a decimated read) and only the unreadable pieces become nodata; such reads
  are counted in ``read_errors`` (shared by clones, so a run's reading threads add up).

One file because every read goes through one nodata rule, one stretch and one error rule;
split apart they would drift (presets and band roles could move out if it grows further).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import InputError
from ..model.segmenter import RasterBands
from .bands import PRESETS, ROLES, Preset, roles_from_descriptions  # noqa: F401 - re-exported
from .files import input_error, library_errors, open_raster_dataset, reading

# Longest side of the decimated whole-scene read used for statistics (stretch, Otsu).
OVERVIEW_SIZE = 1024
PATCH_SAMPLING_FACTOR = 16  # rasters bigger than this many samples are sampled in patches
PATCHES = 16  # patches per side
STATS_TILES = 8  # tiled files: storage tiles per side of the statistics sample
READ_ERROR_POLICIES = ("fail", "skip")
SKIP_HINT = "--on-read-error skip maps unreadable blocks as nodata"
_MAX_PIECES = 4096  # most pieces one failed read is retried in (on_read_error="skip")


def parse_bands(value: str | Sequence[int] | None, *, path: str | os.PathLike = "") -> tuple[int, ...] | None:
    """'3,2,1' or [3, 2, 1] -> (3, 2, 1); one band means grey."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            bands = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        except ValueError:
            raise InputError(
                f"{path}: bad band list {value!r}; expected 1-based numbers like 3,2,1", field="bands"
            ) from None
    else:
        bands = tuple(int(v) for v in value)
    if len(bands) not in (1, 3):
        raise InputError(
            f"{path}: --bands needs 1 (grey) or 3 (R,G,B) band numbers, got {value!r}", field="bands"
        )
    return bands


def _counts_text(counts: tuple[int, ...]) -> str:
    if len(counts) > 2 and counts == tuple(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]} to {counts[-1]}"
    return " or ".join(map(str, counts))


def ordered_bounds(ds: Any) -> BoundingBox:
    """A dataset's extent as (xmin, ymin, xmax, ymax): rasterio gives bottom > top when south-up."""
    left, bottom, right, top = ds.bounds
    return BoundingBox(min(left, right), min(bottom, top), max(left, right), max(bottom, top))


def _holds_alpha(f: Any, band: int, skip_unreadable: bool = False) -> bool:
    """Whether a band tagged alpha holds alpha values: (almost) only 0 and full opacity.

    ``skip_unreadable``: judge from the pieces that can be read (a truncated file).
    """
    scale = max(f.width, f.height) / 256
    shape = (max(1, round(f.height / scale)), max(1, round(f.width / scale))) if scale > 1 else None
    try:
        values = f.read(band, out_shape=shape, resampling=Resampling.nearest)
    except library_errors() as exc:
        if not skip_unreadable:
            raise input_error(
                f.name, "raster", exc, during="checking the alpha band", hint=SKIP_HINT
            ) from None
        parts = []
        for piece, piece_shape, _ in _pieces(Window(0, 0, f.width, f.height), shape, f.block_shapes[0]):
            try:
                parts.append(f.read(band, window=piece, out_shape=piece_shape, resampling=Resampling.nearest))
            except library_errors():
                continue
        values = np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0, f.dtypes[band - 1])
        if not values.size:
            return True  # nothing readable: keep the file's own tag
    full = np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1.0
    return float(np.isin(values, (0, full)).mean()) >= 0.95


def _shrunk(height: int, width: int, max_size: int) -> tuple[int, int]:
    """(rows, cols) of a decimated read of height x width px whose longest side is ``max_size``."""
    scale = max(width, height) / max_size
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


# 16-bit integer types are stretched through a 65536-entry lookup table per band.
_LUT_DTYPES = ("uint16", "int16")


class ReadErrors:
    """Reads that hit unreadable blocks, counted across a source and its clones (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.first: str | None = None  # the first one, as a one-line message

    def add(self, message: str) -> None:
        with self._lock:
            self.count += 1
            if self.first is None:
                self.first = message


def _pieces(
    window: Window, out_shape: tuple[int, int] | None, block: tuple[int, int]
) -> list[tuple[Window, tuple[int, int] | None, tuple[slice, slice]]]:
    """A failed read split in pieces: (source window, piece out_shape, slice of the result).

    Full-resolution reads are split along storage blocks (coarser when that makes too many
    pieces); decimated reads along a grid of at most PATCHES x PATCHES output cells.
    """
    r0, c0 = int(window.row_off), int(window.col_off)
    height, width = int(window.height), int(window.width)
    if out_shape is None:
        bh, bw = max(1, block[0]), max(1, block[1])
        while math.ceil(height / bh + 1) * math.ceil(width / bw + 1) > _MAX_PIECES:
            bh, bw = bh * 2, bw * 2
        rows = sorted({r0, *range((r0 // bh + 1) * bh, r0 + height, bh)})
        cols = sorted({c0, *range((c0 // bw + 1) * bw, c0 + width, bw)})
        row_spans = list(zip(rows, [*rows[1:], r0 + height], strict=True))
        col_spans = list(zip(cols, [*cols[1:], c0 + width], strict=True))
        return [
            (Window(a, r, b - a, s - r), None, (slice(r - r0, s - r0), slice(a - c0, b - c0)))
            for r, s in row_spans
            for a, b in col_spans
        ]
    oh, ow = out_shape
    ny, nx = min(PATCHES, oh), min(PATCHES, ow)
    out: list[tuple[Window, tuple[int, int] | None, tuple[slice, slice]]] = []
    for i in range(ny):
        y0, y1 = i * oh // ny, (i + 1) * oh // ny
        sr0, sr1 = r0 + round(y0 * height / oh), r0 + round(y1 * height / oh)
        for j in range(nx):
            x0, x1 = j * ow // nx, (j + 1) * ow // nx
            sc0, sc1 = c0 + round(x0 * width / ow), c0 + round(x1 * width / ow)
            if y1 > y0 and x1 > x0 and sr1 > sr0 and sc1 > sc0:
                out.append(
                    (
                        Window(sc0, sr0, sc1 - sc0, sr1 - sr0),
                        (y1 - y0, x1 - x0),
                        (slice(y0, y1), slice(x0, x1)),
                    )
                )
    return out


class RasterSource:
    """An open raster with its band choice, nodata rule and scene stretch; read with ``read_chip``.

    Use as a context manager (``with open_raster(path) as src:``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        bands: str | Sequence[int] | None = None,
        preset: str | None = None,
        resolution: float | None = None,
        stretch: tuple[float, float] = (2, 98),
        green: int | None = None,
        nir: int | None = None,
        swir: int | None = None,
        label: str | None = None,
        on_read_error: str = "fail",
    ) -> None:
        self._open_path = str(path)
        self.path = label or str(path)  # how messages name the raster (a STAC VRT is XML text)
        self._init_args: dict[str, Any] = dict(
            bands=bands,
            preset=preset,
            resolution=resolution,
            stretch=stretch,
            green=green,
            nir=nir,
            swir=swir,
            label=label,
            on_read_error=on_read_error,
        )
        if preset is not None and preset not in PRESETS:
            raise InputError(f"{path}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if on_read_error not in READ_ERROR_POLICIES:
            raise InputError(
                f"on read error must be one of {', '.join(READ_ERROR_POLICIES)}, not {on_read_error!r}"
            )
        self.preset = preset
        self.on_read_error = on_read_error
        self._errors = ReadErrors()
        try:
            self._file = open_raster_dataset(os.fspath(path), "raster", label=self.path)
        except InputError as exc:
            exc.field = exc.field or "raster"  # the dialog names its raster field
            raise
        self._vrt: WarpedVRT | None = None
        try:
            self._setup(bands, preset, resolution, stretch, {"green": green, "nir": nir, "swir": swir})
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- setup
    def _setup(self, bands, preset, resolution, stretch, overrides) -> None:
        f = self._file
        if f.crs is None and f.gcps[0]:
            raise InputError(
                f"{self.path}: raster is georeferenced by ground control points only; "
                "warp it to a map grid first, e.g. gdalwarp -r bilinear in.tif out.tif"
            )
        if f.crs is None:
            raise InputError(
                f"{self.path}: raster has no CRS (coordinate reference system); "
                "assign one first, e.g. gdal_edit.py -a_srs EPSG:xxxx"
            )
        if f.count < 1:
            raise InputError(f"{self.path}: raster has no bands")
        self._ds = f
        ds = f
        self.crs = ds.crs
        self.transform: Affine = ds.transform
        self.width: int = ds.width
        self.height: int = ds.height
        self.res: tuple[float, float] = ds.res
        self.count: int = f.count
        self.descriptions: tuple[str | None, ...] = tuple(f.descriptions)
        self.dtype: str = f.dtypes[0]
        self.nodata: float | None = f.nodata
        self.stretch_percentiles = (float(stretch[0]), float(stretch[1]))

        interp = f.colorinterp
        self.alpha_band: int | None = None
        explicit = {
            *(parse_bands(bands, path=self.path) or ()),
            *(b for b in overrides.values() if b is not None),
        }
        guessed = {*PRESETS[preset].rgb, *PRESETS[preset].roles_for(f.count).values()} if preset else set()
        if ColorInterp.alpha in interp:
            a = interp.index(ColorInterp.alpha) + 1
            # A band asked for by number is data, even if the file calls it alpha. A preset
            # only guesses: it wins over the tag only when the band does not hold alpha
            # values (GDAL tags band 4 of any 4-band uint8 file alpha, NIR included).
            if a not in explicit and (a not in guessed or _holds_alpha(f, a, self.on_read_error == "skip")):
                self.alpha_band = a
        data_bands = [b for b in range(1, f.count + 1) if b != self.alpha_band]

        def check(b: int, what: str) -> int:
            if not 1 <= b <= f.count:
                raise InputError(
                    f"{self.path}: {what} band {b} does not exist (the raster has {f.count} bands)",
                    field="bands" if what == "RGB" else what,
                    code="band_out_of_range",
                )
            return b

        # Band roles: overrides > descriptions > preset.
        roles: dict[str, int] = {}
        described = roles_from_descriptions(self.descriptions, preset)
        if preset:
            p = PRESETS[preset]
            if p.counts and f.count not in p.counts and not described:
                raise InputError(
                    f"{self.path}: preset {preset!r} expects {_counts_text(p.counts)} bands but the "
                    f"raster has {f.count}; use --bands and --green/--nir/--swir instead",
                    field="preset",
                    code="preset_mismatch",
                )
            roles.update(
                {r: b for r, b in p.roles_for(f.count).items() if b <= f.count and b != self.alpha_band}
            )
        roles.update(described)
        for role, band in overrides.items():
            if band is not None:
                roles[role] = check(int(band), role)
        self.band_roles: dict[str, int] = roles

        # RGB rendering: --bands > preset > described red/green/blue > first three data bands.
        chosen = parse_bands(bands, path=self.path)
        if chosen is None and preset:
            rgb = PRESETS[preset].rgb
            if max(rgb) > f.count:
                raise InputError(
                    f"{self.path}: preset {preset!r} expects bands {rgb} but the raster has "
                    f"{f.count}; use --bands and --green/--nir/--swir instead",
                    field="preset",
                    code="preset_mismatch",
                )
            chosen = rgb
        if chosen is None and all(r in roles for r in ("red", "green", "blue")):
            chosen = (roles["red"], roles["green"], roles["blue"])
        if chosen is None:
            chosen = tuple(data_bands[:3]) if len(data_bands) >= 3 else (data_bands[0],)
        for b in chosen:
            check(b, "RGB")
        self.rgb_bands: tuple[int, int, int] = tuple(chosen) * 3 if len(chosen) == 1 else tuple(chosen)  # type: ignore[assignment]

        if resolution:
            self._vrt = self._warped(float(resolution))
            self._ds = self._vrt
            ds = self._ds
            self.transform, self.width, self.height, self.res = ds.transform, ds.width, ds.height, ds.res

        flags = [f.mask_flag_enums[b - 1] for b in data_bands]
        self._per_dataset_mask = self.alpha_band is None and any(
            MaskFlags.per_dataset in fl and MaskFlags.alpha not in fl and MaskFlags.nodata not in fl
            for fl in flags
        )
        if self._vrt is not None:
            # The warped view marks invalid pixels with nodata or an added alpha band.
            self.alpha_band = self._vrt_alpha
            self._per_dataset_mask = False
        self._float = np.dtype(self.dtype).kind == "f"
        self._nodata_cmp = None if self.nodata is None or math.isnan(self.nodata) else self.nodata
        # The scene stretch is computed on first use (read_sample computes it for free).
        self._lo: np.ndarray | None = None
        self._hi: np.ndarray | None = None
        self._luts: np.ndarray | None = None

    def _warped(self, resolution: float) -> WarpedVRT:
        f = self._file
        t = f.transform
        if t.b != 0 or t.d != 0:
            raise InputError(f"{self.path}: --resolution is not supported for rotated rasters")
        if resolution <= 0:
            raise InputError(f"{self.path}: resolution must be positive, got {resolution}")
        left, bottom, right, top = ordered_bounds(f)  # also for south-up rasters
        if f.crs.is_geographic:
            # Metres -> degrees at the scene centre (1 degree of latitude ~ 111.32 km).
            lat = (top + bottom) / 2
            res_y = resolution / 111_320.0
            res_x = resolution / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
        else:
            factor = f.crs.linear_units_factor[1] if f.crs.linear_units_factor else 1.0
            res_x = res_y = resolution / factor
        width = max(1, round((right - left) / res_x))
        height = max(1, round((top - bottom) / res_y))
        transform = Affine(res_x, 0.0, left, 0.0, -res_y, top)
        coarser = res_x > abs(t.a) * 1.01
        kwargs: dict[str, Any] = dict(
            crs=f.crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.average if coarser else Resampling.bilinear,
        )
        self._vrt_alpha = self.alpha_band
        if self.alpha_band is None:
            if f.nodata is not None:
                kwargs.update(src_nodata=f.nodata, nodata=f.nodata)
            elif np.dtype(f.dtypes[0]).kind == "f":
                kwargs.update(src_nodata=float("nan"), nodata=float("nan"))
            else:
                kwargs["add_alpha"] = True  # marks pixels the source mask (or no data) left out
        with reading(self.path, "raster"):
            vrt = WarpedVRT(f, **kwargs)
        if kwargs.get("add_alpha"):
            self._vrt_alpha = vrt.count
        return vrt

    def _ensure_stretch(self) -> None:
        if self._lo is None and self.dtype != "uint8":
            bands = sorted(set(self.rgb_bands))
            values, valid = self._read_stats_sample(bands, OVERVIEW_SIZE)
            self._set_stretch(values.astype(np.float32), valid, bands)

    def _set_stretch(self, data: np.ndarray, valid: np.ndarray, bands: Sequence[int]) -> None:
        """Per-band percentiles over valid pixels of one decimated read (never per chip)."""
        lo_p, hi_p = self.stretch_percentiles
        lo = np.zeros(3, np.float64)
        hi = np.ones(3, np.float64)
        for i, b in enumerate(self.rgb_bands):
            v = data[list(bands).index(b)][valid]
            v = v[np.isfinite(v)]
            if v.size:
                lo[i], hi[i] = np.percentile(v, [lo_p, hi_p])
            if hi[i] <= lo[i]:
                hi[i] = lo[i] + 1.0
        self.set_stretch(lo, hi)

    def set_stretch(self, low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray) -> None:
        """Use a known scene stretch (low, high per RGB band): another process reads the same chips."""
        lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if self.dtype in _LUT_DTYPES:
            # Indexed by the raw 16 bits (an int16 array viewed as uint16): one np.take per band.
            values = np.arange(65536, dtype=np.uint16).view(self.dtype).astype(np.float64)
            self._luts = np.stack(
                [np.clip((values - lo[i]) / (hi[i] - lo[i]) * 255.0 + 0.5, 0, 255) for i in range(3)]
            ).astype(np.uint8)
        self._lo, self._hi = lo, hi

    # ---------------------------------------------------------------- info
    @property
    def raster_bands(self) -> RasterBands:
        return RasterBands(count=self.count, descriptions=self.descriptions, rgb=self.rgb_bands)

    @property
    def stretch(self) -> list[tuple[float, float]] | None:
        """(low, high) per RGB band, or None for 8-bit data shown as is."""
        self._ensure_stretch()
        if self._lo is None or self._hi is None:
            return None
        return [(float(a), float(b)) for a, b in zip(self._lo, self._hi, strict=True)]

    @property
    def tags(self) -> dict[str, str]:
        """The raster's metadata (default domain), e.g. for its acquisition date."""
        return dict(self._file.tags())

    @property
    def bounds(self) -> BoundingBox:
        """(left, bottom, right, top) with bottom < top, also for south-up rasters."""
        return ordered_bounds(self._ds)

    @property
    def read_errors(self) -> int:
        """Reads (chips, statistics) that hit unreadable blocks, mapped as nodata (``skip``)."""
        return self._errors.count

    @property
    def first_read_error(self) -> str | None:
        """The first of those, as a one-line message (file, window, GDAL's reason)."""
        return self._errors.first

    # ---------------------------------------------------------------- reading
    def _guarded(
        self,
        read: Any,
        window: Window | None,
        out_shape: tuple[int, int] | None,
        lead: tuple[int, ...],
        dtype: Any,
        during: str,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``read(window, out_shape)`` -> (array, readable or None when all of it was read).

        A library error fails with the file and window named, or with ``on_read_error="skip"``
        the window is read again in pieces and the pieces that fail stay zero and unreadable.
        """
        try:
            return read(window, out_shape), None
        except library_errors() as exc:
            message = str(input_error(self.path, "raster", exc, window=window, during=during))
            if self.on_read_error != "skip":
                raise InputError(f"{message}; {SKIP_HINT}") from None
        whole = window if window is not None else Window(0, 0, self.width, self.height)
        shape = out_shape or (int(whole.height), int(whole.width))
        data = np.zeros((*lead, *shape), dtype)
        readable = np.ones(shape, bool)
        for piece, piece_shape, (rows, cols) in _pieces(whole, out_shape, self._ds.block_shapes[0]):
            try:
                data[..., rows, cols] = read(piece, piece_shape)
            except library_errors():
                readable[rows, cols] = False
        self._errors.add(message)
        return data, readable

    def _read(
        self,
        bands: Sequence[int],
        window: Window | None,
        out_shape: tuple[int, int] | None,
        during: str = "",
    ) -> tuple[np.ndarray, np.ndarray]:
        """One read of ``bands`` (+ the alpha band when there is one) -> (data, valid)."""
        indexes = list(bands)
        if self.alpha_band is not None and self.alpha_band not in indexes:
            indexes.append(self.alpha_band)

        def read_data(win: Window | None, shape: tuple[int, int] | None) -> np.ndarray:
            kwargs: dict[str, Any] = {"window": win}
            if shape is not None:
                kwargs.update(out_shape=(len(indexes), *shape), resampling=Resampling.nearest)
            return self._ds.read(indexes, **kwargs)

        def read_mask(win: Window | None, shape: tuple[int, int] | None) -> np.ndarray:
            kwargs: dict[str, Any] = {"window": win}
            if shape is not None:
                kwargs.update(out_shape=shape, resampling=Resampling.nearest)
            return self._ds.read_masks(1, **kwargs)

        data, readable = self._guarded(
            read_data, window, out_shape, (len(indexes),), self._ds.dtypes[0], during
        )
        n = len(bands)
        values = data[:n]
        if self.alpha_band is not None:
            valid = data[indexes.index(self.alpha_band)] > 0
        elif self._per_dataset_mask:
            mask, mask_readable = self._guarded(read_mask, window, out_shape, (), np.uint8, during)
            valid = mask > 0
            if mask_readable is not None:
                readable = mask_readable if readable is None else readable & mask_readable
        else:
            valid = None
        data_bands = [i for i, b in enumerate(bands) if b != self.alpha_band]
        if self._nodata_cmp is not None or self._float:
            v = values if len(data_bands) == len(values) else values[data_bands]
            has = np.ones(v.shape, bool) if self._nodata_cmp is None else v != self._nodata_cmp
            if self._float:
                has &= np.isfinite(v)
            any_has = has.any(axis=0)
            valid = any_has if valid is None else valid & any_has
        if valid is None:
            valid = np.ones(values.shape[1:], bool)
        if readable is not None:
            valid &= readable
        return values, valid

    def _read_stats_sample(
        self, bands: list[int], max_size: int, window: Window | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A decimated read of the scene (or of ``window``), or for big rasters without overviews a patchwork.

        GDAL's decimated read of a raster without overviews decompresses every block; past
        ``PATCH_SAMPLING_FACTOR`` times the sample size, a patchwork spread evenly over the
        area is read instead and laid side by side (statistics only: the sample is not a
        map). Tiled files: ``STATS_TILES`` x ``STATS_TILES`` whole storage tiles, each read
        decimated, so every patch costs exactly one tile; other layouts: ``PATCHES`` x
        ``PATCHES`` small windows.
        """
        r0, c0 = (0, 0) if window is None else (int(window.row_off), int(window.col_off))
        height, width = (
            (self.height, self.width) if window is None else (int(window.height), int(window.width))
        )
        big = width * height > PATCH_SAMPLING_FACTOR * max_size * max_size
        during = "reading scene statistics"
        if not big or self._ds.overviews(bands[0]):
            return self._read(bands, window, _shrunk(height, width, max_size), during)
        bh, bw = self.block_shape
        if self._vrt is None and bw < self.width and bh < self.height:
            return self._tile_sample(bands, max_size, Window(c0, r0, width, height), (bh, bw), during)
        n = PATCHES
        ph, pw = max(1, min(max_size // n, height // n)), max(1, min(max_size // n, width // n))
        values = np.empty((len(bands), n * ph, n * pw), self.dtype)
        valid = np.empty((n * ph, n * pw), bool)
        for i in range(n):
            r = r0 + int((i + 0.5) * height / n - ph / 2)
            for j in range(n):
                c = c0 + int((j + 0.5) * width / n - pw / 2)
                v, m = self._read(bands, Window(c, r, pw, ph), None, during)
                values[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = v
                valid[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = m
        return values, valid

    def _tile_sample(
        self, bands: list[int], max_size: int, area: Window, block: tuple[int, int], during: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Whole storage tiles evenly spread over ``area`` (clipped to it), each decimated to one patch."""
        bh, bw = block
        r0, c0 = int(area.row_off), int(area.col_off)
        r1, c1 = r0 + int(area.height), c0 + int(area.width)
        tile_rows = range(r0 // bh, (r1 - 1) // bh + 1)
        tile_cols = range(c0 // bw, (c1 - 1) // bw + 1)
        ni, nj = min(STATS_TILES, len(tile_rows)), min(STATS_TILES, len(tile_cols))
        ph, pw = max(1, min(max_size // ni, bh)), max(1, min(max_size // nj, bw))
        values = np.empty((len(bands), ni * ph, nj * pw), self.dtype)
        valid = np.empty((ni * ph, nj * pw), bool)
        for i in range(ni):
            tr = tile_rows[int((i + 0.5) * len(tile_rows) / ni)]
            top, bottom = max(r0, tr * bh), min(r1, (tr + 1) * bh)
            for j in range(nj):
                tc = tile_cols[int((j + 0.5) * len(tile_cols) / nj)]
                left, right = max(c0, tc * bw), min(c1, (tc + 1) * bw)
                v, m = self._read(bands, Window(left, top, right - left, bottom - top), (ph, pw), during)
                values[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = v
                valid[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = m
        return values, valid

    def read_overview(
        self, bands: Sequence[int], max_size: int = OVERVIEW_SIZE
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decimated (nearest) read of the whole scene: float32 (n, h, w) NaN-invalid, valid (h, w)."""
        shape = self.overview_shape(max_size)
        values, valid = self._read(list(bands), None, shape, "reading the decimated scene")
        raw = values.astype(np.float32)
        raw[:, ~valid] = np.nan
        return raw, valid

    def overview_shape(self, max_size: int = OVERVIEW_SIZE) -> tuple[int, int]:
        """(rows, cols) of a decimated whole-scene read whose longest side is ``max_size``."""
        return _shrunk(self.height, self.width, max_size)

    def read_sample(
        self,
        raw_bands: Sequence[int] = (),
        max_size: int = OVERVIEW_SIZE,
        window: Window | None = None,
        rgb: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scene (or ``window`` of it) decimated (nearest) as one chip: (raw, rgb, valid), like ``read_chip``.

        One read serves the scene stretch (when not yet known) and a segmenter's ``prepare``.
        A window keeps the statistics to the part being mapped (an AOI on a huge raster).
        ``rgb=False``: only ``raw_bands`` are read and no stretch is computed (rgb is (h, w, 0)).
        """
        raw_bands = list(raw_bands)
        bands = list(dict.fromkeys([*(self.rgb_bands if rgb else ()), *raw_bands]))
        values, valid = self._read_stats_sample(bands, max_size, window)
        if rgb and self._lo is None and self.dtype != "uint8":
            as_float = values.astype(np.float32)
            self._set_stretch(as_float, valid, bands)
        if rgb:
            rendered = self.to_rgb(values, valid, [bands.index(b) for b in self.rgb_bands])
        else:
            rendered = np.empty((*valid.shape, 0), np.uint8)
        raw = values[[bands.index(b) for b in raw_bands]].astype(np.float32)
        raw[:, ~valid] = np.nan
        return raw, rendered, valid

    def to_rgb(self, values: np.ndarray, valid: np.ndarray, positions: Sequence[int]) -> np.ndarray:
        """8-bit (h, w, 3) rendering of ``values[positions]`` with the scene stretch; 0 where invalid."""
        self._ensure_stretch()
        h, w = valid.shape
        rgb = np.empty((h, w, 3), np.uint8)
        for i, p in enumerate(positions):
            band = values[p]
            if self.dtype == "uint8":
                rgb[..., i] = band
            elif self._luts is not None:
                rgb[..., i] = np.take(self._luts[i], band.astype(self.dtype, copy=False).view(np.uint16))
            else:
                assert self._lo is not None and self._hi is not None  # _ensure_stretch set them
                scaled = (band.astype(np.float32) - self._lo[i]) * (255.0 / (self._hi[i] - self._lo[i]))
                np.nan_to_num(scaled, copy=False, nan=0.0)
                rgb[..., i] = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
        if not valid.all():
            rgb[~valid] = 0
        return rgb

    def read_chip(
        self,
        window: Window,
        raw_bands: Sequence[int] = (),
        out_shape: tuple[int, int] | None = None,
        rgb: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read one window: (raw float32 (n,h,w) NaN-invalid, rgb uint8 (h,w,3), valid bool (h,w)).

        One read call for the RGB and raw bands together. ``out_shape`` resamples the window
        (nearest, so values and nodata stay exact), used for rasters smaller than a chip.
        ``rgb=False`` (an engine that never looks at the rendering): only ``raw_bands`` are
        read and validity comes from them; rgb is an empty (h, w, 0) array.
        """
        raw_bands = list(raw_bands)
        bands = list(dict.fromkeys([*(self.rgb_bands if rgb else ()), *raw_bands]))
        if not bands:  # validity only (a text engine's answers rebuilt): as the model's chips had it
            bands = list(dict.fromkeys(self.rgb_bands))
        values, valid = self._read(bands, window, out_shape)
        if rgb:
            rendered = self.to_rgb(values, valid, [bands.index(b) for b in self.rgb_bands])
        else:
            rendered = np.empty((*valid.shape, 0), np.uint8)
        if raw_bands:
            if raw_bands == bands:
                raw = values.astype(np.float32)
            else:
                raw = values[[bands.index(b) for b in raw_bands]].astype(np.float32)
            if not valid.all():
                raw[:, ~valid] = np.nan
        else:
            raw = np.empty((0, *valid.shape), np.float32)
        return raw, rendered, valid

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of the file's storage blocks (tiles or strips) as GDAL reads them."""
        rows, cols = self._ds.block_shapes[0]
        return int(rows), int(cols)

    def clone(self) -> RasterSource:
        """Another handle on the same raster, same settings and the same scene stretch.

        A GDAL dataset handle must not be read from two threads at once: each reading
        thread gets its own clone (the stretch is copied, never recomputed, so chips read
        through any clone are identical).
        """
        other = type(self)(self._open_path, **self._init_args)  # a subclass clones as itself
        other._lo, other._hi, other._luts = self._lo, self._hi, self._luts
        other._errors = self._errors  # one count for the run, whichever thread read
        return other

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        if self._vrt is not None:
            self._vrt.close()
            self._vrt = None
        self._file.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RasterSource({self.path!r}, {self.width}x{self.height}x{self.count} {self.dtype}, "
            f"{self.crs}, rgb={self.rgb_bands}, roles={self.band_roles})"
        )


def open_raster(
    path: str | os.PathLike,
    *,
    bands: str | Sequence[int] | None = None,
    preset: str | None = None,
    resolution: float | None = None,
    stretch: tuple[float, float] = (2, 98),
    green: int | None = None,
    nir: int | None = None,
    swir: int | None = None,
    label: str | None = None,
    on_read_error: str = "fail",
) -> RasterSource:
    """Open any GDAL raster with a CRS for windowed chip reading (see RasterSource).

    ``bands``: 1-based RGB rendering bands ("3,2,1", or one band for grey). ``preset``: one of
    PRESETS. ``resolution``: target ground resolution in metres (resampled on the fly, same
    CRS). ``green``/``nir``/``swir``: explicit band roles, overriding descriptions and preset.
    ``on_read_error``: "fail" (InputError naming file and window) or "skip" (unreadable
    blocks become nodata, counted in ``read_errors``).
    """
    return RasterSource(
        path,
        bands=bands,
        preset=preset,
        resolution=resolution,
        stretch=stretch,
        green=green,
        nir=nir,
        swir=swir,
        label=label,
        on_read_error=on_read_error,
    )
