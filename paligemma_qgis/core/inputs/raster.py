"""An open raster: band choice, nodata rule and scene stretch, read one window at a time.

Why it looks like this:

- Only windows are read (plus one decimated read of the whole scene for statistics), so a
  20000 x 20000 scene costs what a chip costs.
- 16-bit and float imagery is stretched to 8 bits with per-band percentiles computed *once
  per scene* over valid pixels (``stretch``).
- A pixel is valid when *any* band read has data (GDAL's dataset-mask rule), so a black
  NIR value over water is data, not nodata. Alpha bands and internal masks are honoured; NaN
  never counts as data. Invalid pixels are NaN in ``raw`` and 0 in ``rgb``. The bands read
  are what the engine uses: the RGB rendering bands for a model, only the index bands for
  a water index (which gets no rendering and no stretch).
- Which band is what (RGB, roles, alpha) is decided by ``band_choice.resolve_bands`` from
  the file's facts and the user's request; failed reads and the statistics sample are in
  ``reads``. Every read goes through ``RasterSource._read``: one nodata rule.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import InputError
from ..model.segmenter import RasterBands
from .band_choice import BandFacts, BandRequest, check_preset, parse_bands, resolve_bands
from .bands import PRESETS, ROLES, Preset, roles_from_descriptions  # noqa: F401 - re-exported
from .files import open_raster_dataset
from .reads import ReadErrors, guarded_read, holds_alpha, shrunk, stats_sample
from .stretch import Stretch, percentile_bounds, render_rgb
from .warp import check_georeferenced, ordered_bounds, warped_view  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from rasterio.crs import CRS
    from rasterio.io import DatasetReader

# Longest side of the decimated whole-scene read used for statistics (stretch, Otsu).
OVERVIEW_SIZE = 1024
READ_ERROR_POLICIES = ("fail", "skip")


class RasterSource:
    """An open raster with its band choice, nodata rule and scene stretch; read with ``read_chip``.

    Use as a context manager (``with open_raster(path) as src:``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
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
        check_preset(self.path, preset)
        if on_read_error not in READ_ERROR_POLICIES:
            choices = ", ".join(READ_ERROR_POLICIES)
            raise InputError(
                "option_choice", field="on_read_error", value=repr(on_read_error), choices=choices
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
            self._setup(bands, resolution, stretch, {"green": green, "nir": nir, "swir": swir})
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- setup
    def _setup(
        self,
        bands: str | Sequence[int] | None,
        resolution: float | None,
        stretch: tuple[float, float],
        roles: Mapping[str, int | None],
    ) -> None:
        f = self._file
        check_georeferenced(f, self.path)
        self._ds: DatasetReader | WarpedVRT = f
        self.crs: CRS = f.crs
        self.transform: Affine = f.transform
        self.width: int = f.width
        self.height: int = f.height
        self.res: tuple[float, float] = f.res
        self.count: int = f.count
        self.descriptions: tuple[str | None, ...] = tuple(f.descriptions)
        self.dtype: str = f.dtypes[0]
        self.nodata: float | None = f.nodata
        self.stretch_percentiles = (float(stretch[0]), float(stretch[1]))

        interp = list(f.colorinterp)
        tag = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None
        facts = BandFacts(self.path, f.count, self.descriptions, tag)
        asked = {r: int(b) for r, b in roles.items() if b is not None}
        request = BandRequest(parse_bands(bands, path=self.path), self.preset, asked)
        skip = self.on_read_error == "skip"
        choice = resolve_bands(
            facts, request, lambda b: holds_alpha(f, b, path=self.path, skip_unreadable=skip)
        )
        self.alpha_band: int | None = choice.alpha
        self.band_roles: dict[str, int] = dict(choice.roles)
        self.rgb_bands: tuple[int, int, int] = choice.rgb

        flags = [f.mask_flag_enums[b - 1] for b in choice.data_bands]
        self._per_dataset_mask = self.alpha_band is None and any(
            MaskFlags.per_dataset in fl and MaskFlags.alpha not in fl and MaskFlags.nodata not in fl
            for fl in flags
        )
        if resolution:
            self._vrt, self.alpha_band = warped_view(f, float(resolution), self.alpha_band, self.path)
            self._ds = vrt = self._vrt
            self.transform, self.width, self.height, self.res = vrt.transform, vrt.width, vrt.height, vrt.res
            self._per_dataset_mask = False  # the warped view marks invalid pixels itself
        self._float = np.dtype(self.dtype).kind == "f"
        self._nodata_cmp = None if self.nodata is None or math.isnan(self.nodata) else self.nodata
        self._stretch: Stretch | None = None  # computed on first use (read_sample computes it for free)

    # ---------------------------------------------------------------- stretch
    def _ensure_stretch(self) -> None:
        if self._stretch is None and self.dtype != "uint8":
            bands = sorted(set(self.rgb_bands))
            values, valid = self._read_stats_sample(bands, OVERVIEW_SIZE)
            self._set_stretch(values.astype(np.float32), valid, bands)

    def _set_stretch(self, data: np.ndarray, valid: np.ndarray, bands: Sequence[int]) -> None:
        """Per-band percentiles over valid pixels of one decimated read (never per chip)."""
        positions = [list(bands).index(b) for b in self.rgb_bands]
        self.set_stretch(*percentile_bounds(data, valid, positions, self.stretch_percentiles))

    def set_stretch(self, low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray) -> None:
        """Use a known scene stretch (low, high per RGB band): another process reads the same chips."""
        self._stretch = Stretch.of(low, high, self.dtype)

    # ---------------------------------------------------------------- info
    @property
    def raster_bands(self) -> RasterBands:
        return RasterBands(count=self.count, descriptions=self.descriptions, rgb=self.rgb_bands)

    @property
    def stretch(self) -> list[tuple[float, float]] | None:
        """(low, high) per RGB band, or None for 8-bit data shown as is."""
        self._ensure_stretch()
        return None if self._stretch is None else self._stretch.pairs()

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

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of the file's storage blocks (tiles or strips) as GDAL reads them."""
        rows, cols = self._ds.block_shapes[0]
        return int(rows), int(cols)

    # ---------------------------------------------------------------- reading
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

        guarded = functools.partial(
            guarded_read,
            path=self.path,
            during=during,
            skip=self.on_read_error == "skip",
            size=(self.height, self.width),
            block=self._ds.block_shapes[0],
            errors=self._errors,
        )
        data, readable = guarded(read_data, window, out_shape, (len(indexes),), self._ds.dtypes[0])
        n = len(bands)
        values = data[:n]
        if self.alpha_band is not None:
            valid = data[indexes.index(self.alpha_band)] > 0
        elif self._per_dataset_mask:
            mask, mask_readable = guarded(read_mask, window, out_shape, (), np.uint8)
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
        """The scene (or ``window``) decimated for statistics, or a patchwork of it (``reads.stats_sample``)."""
        bh, bw = self.block_shape
        tiled = self._vrt is None and bw < self.width and bh < self.height
        return stats_sample(
            self._read,
            bands,
            max_size,
            window,
            size=(self.height, self.width),
            dtype=self.dtype,
            overviews=bool(self._ds.overviews(bands[0])),
            tiles=(bh, bw) if tiled else None,
        )

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
        return shrunk(self.height, self.width, max_size)

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
        if rgb and self._stretch is None and self.dtype != "uint8":
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
        return render_rgb(values, valid, positions, self.dtype, self._stretch)

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

    def clone(self) -> RasterSource:
        """Another handle on the same raster, same settings and the same scene stretch.

        A GDAL dataset handle must not be read from two threads at once: each reading
        thread gets its own clone (the stretch is copied, never recomputed, so chips read
        through any clone are identical).
        """
        other = type(self)(self._open_path, **self._init_args)  # a subclass clones as itself
        other._stretch = self._stretch
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
    path: str | os.PathLike[str],
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
