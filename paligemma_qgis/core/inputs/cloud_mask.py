"""Clouds are not water and not land: masked pixels are not observed, for every engine.

A cloud mask says which pixels of a scene the sensor did not see the ground in. Those pixels
are taken out of the raster's validity (``MaskedSource._read``, the one hook), so they are
left out of everything validity drives: the scene's observed footprint (the ``scenes``
layer, hence ``change``'s unknown and ``occurrence``'s observations), the statistics a
scene's threshold is chosen from, each chip's valid share (a clouded chip is skipped), and
the chips the model sees (masked pixels are black, like nodata). Water under a cloud is
neither water nor land: it is not observed.

Where a mask comes from (``ReadSpec.cloud_mask``):

- ``scl``: Sentinel-2 L2A's scene classification; classes ``rules.SCL_MASKED`` (no data,
  saturated, cloud shadow, cloud medium and high probability, thin cirrus, snow) are masked;
- ``qa_pixel``: Landsat Collection 2's pixel QA bits ``rules.QA_PIXEL_MASKED_BITS`` (fill,
  dilated cloud, cirrus, cloud, cloud shadow, snow);
- either from a STAC item's asset (``Scene.masks``, found by ``stac``) or from a band of the
  raster described ``SCL`` / ``QA_PIXEL``; ``auto`` (the default) takes whichever the data
  has, and no mask where it has none;
- ``s2cloudless``: Sentinel Hub's cloud detector (optional package, its LightGBM model ships
  with it) on the ten L1C bands, run at ``rules.S2CLOUDLESS_RESOLUTION_M`` as its authors
  advise (probability averaged over 4 pixels, clouds dilated by 2), once per scene;
- a file: a mask raster, warped onto each scene's grid by nearest neighbour; its non-zero
  values are clouds (or the values ``mask_classes`` lists); outside it nothing is masked.

``mask_classes`` replaces the SCL classes, the QA_PIXEL bits or the file's values. What is
never masked: haze and thin cloud a mask calls clear, and shadows of terrain (SCL class 2).

The mask is read on the scene's own grid, through its own GDAL handle per reading thread (a
clone of the source opens its own), window by window as the data is read: the same nearest
sampling as the data, so a chip's mask and the chip agree pixel for pixel.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import rules
from ..errors import InputError
from .files import library_errors
from .raster import OVERVIEW_SIZE, RasterSource
from .scene import Scene

if TYPE_CHECKING:
    from rasterio.windows import Window

    from ..specs import ReadSpec

# Band descriptions that name a mask band inside a raster.
_DESCRIBED = {
    "scl": ("scl", "scene_classification", "scene classification"),
    "qa_pixel": ("qa_pixel", "qa pixel"),
}
# The ten bands s2cloudless reads, by band code, and their places in a 13-band L1C raster B1..B12.
_S2_CODES = ("B1", "B2", "B4", "B5", "B8", "B8A", "B9", "B10", "B11", "B12")
_S2_L1C_ORDER = (1, 2, 4, 5, 8, 9, 10, 11, 12, 13)
_S2_CACHE: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()  # per process: clones share one run
_S2_LOCK = threading.Lock()


@dataclass(frozen=True)
class CloudMask:
    """Where a scene's clouds are read from, resolved (picklable: every reading thread opens its own)."""

    kind: str  # "scl", "qa_pixel", "values" (a mask raster) or "s2cloudless"
    path: str  # GDAL path of the mask raster (a STAC asset's VRT, the scene's own raster, a file)
    bands: tuple[int, ...] = (1,)
    masked: tuple[int, ...] = ()  # classes, bits or values; () for "values": any non-zero value
    label: str = ""  # how messages name the mask

    def describe(self) -> str:
        what = {"scl": "SCL classes", "qa_pixel": "QA_PIXEL bits", "values": "values"}.get(self.kind)
        masked = ",".join(map(str, self.masked)) if self.masked else "non-zero"
        return f"{self.kind} ({what} {masked})" if what else self.kind


def masked_values(kind: str, chosen: tuple[int, ...] | None) -> tuple[int, ...]:
    """The classes (SCL), bits (QA_PIXEL) or values (a mask raster) that are not observed."""
    if chosen is not None:
        return tuple(chosen)
    return {"scl": rules.SCL_MASKED, "qa_pixel": rules.QA_PIXEL_MASKED_BITS}.get(kind, ())


def _described_band(descriptions: tuple[str | None, ...], kind: str) -> int | None:
    names = _DESCRIBED[kind]
    for i, d in enumerate(descriptions, start=1):
        if (d or "").strip().lower() in names:
            return i
    return None


def resolve_mask(read: ReadSpec, scene: Scene, src: RasterSource) -> CloudMask | None:
    """The scene's cloud mask under ``read.cloud_mask``; None when there is none to apply."""
    mode = read.cloud_mask
    if mode == "none":
        return None
    offered = dict(scene.masks)
    if mode in ("auto", "scl", "qa_pixel"):
        for kind in ("scl", "qa_pixel") if mode == "auto" else (mode,):
            masked = masked_values(kind, read.mask_classes)
            if kind in offered:
                return CloudMask(kind, offered[kind], (1,), masked, f"{scene.label} {kind}")
            band = _described_band(src.descriptions, kind)
            if band is not None:
                return CloudMask(kind, scene.path, (band,), masked, f"{scene.label} band {band}")
        if mode == "auto":
            return None
        raise InputError("cloud_mask_missing", field="cloud_mask", path=scene.label, kind=mode)
    if mode == "s2cloudless":
        return _s2cloudless_mask(scene, src)
    return CloudMask("values", mode, (1,), tuple(read.mask_classes or ()), mode)


def _s2cloudless_mask(scene: Scene, src: RasterSource) -> CloudMask:
    try:
        import s2cloudless  # noqa: F401 - optional: said clearly when missing
    except ImportError:
        raise InputError("s2cloudless_unavailable", field="cloud_mask") from None
    offered = dict(scene.masks)
    if "s2bands" in offered:
        return CloudMask("s2cloudless", offered["s2bands"], tuple(range(1, 11)), (), scene.label)
    codes = [(d or "").strip().upper().replace("B0", "B") for d in src.descriptions]
    if all(c in codes for c in _S2_CODES):
        return CloudMask(
            "s2cloudless", scene.path, tuple(codes.index(c) + 1 for c in _S2_CODES), (), scene.label
        )
    if src.preset == "sentinel2" and src.count == 13:
        return CloudMask("s2cloudless", scene.path, _S2_L1C_ORDER, (), scene.label)
    found = ", ".join(d for d in src.descriptions if d) or f"{src.count} bands without names"
    raise InputError("s2cloudless_bands", field="cloud_mask", path=scene.label, found=found)


# ----------------------------------------------------------------------------- reading
class _MaskReader:
    """Reads a mask raster on a source's grid (nearest); one per reading thread."""

    def __init__(self, mask: CloudMask, src: RasterSource):
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self.mask = mask
        self._vrt = None
        try:
            self._file = rasterio.open(mask.path)
        except library_errors() as exc:
            raise InputError(
                "cloud_mask_unreadable", field="cloud_mask", path=src.path, mask=mask.label, detail=str(exc)
            ) from None
        same = (
            self._file.crs == src.crs
            and self._file.transform.almost_equals(src.transform)
            and (self._file.width, self._file.height) == (src.width, src.height)
        )
        self._ds = self._file
        if not same:
            if self._file.crs is None:
                self._file.close()
                raise InputError(
                    "cloud_mask_unreadable",
                    field="cloud_mask",
                    path=src.path,
                    mask=mask.label,
                    detail="it has no CRS",
                )
            self._vrt = WarpedVRT(
                self._file,
                crs=src.crs,
                transform=src.transform,
                width=src.width,
                height=src.height,
                resampling=Resampling.nearest,
                nodata=0,
            )
            self._ds = self._vrt
        self.shape = (src.height, src.width)

    def clouds(self, window: Window | None, shape: tuple[int, int]) -> np.ndarray:
        from rasterio.enums import Resampling

        kwargs: dict[str, Any] = {"window": window, "out_shape": shape, "resampling": Resampling.nearest}
        values = self._ds.read(self.mask.bands[0], **kwargs)
        return decode(self.mask, values)

    def close(self) -> None:
        if self._vrt is not None:
            self._vrt.close()
        self._file.close()


def decode(mask: CloudMask, values: np.ndarray) -> np.ndarray:
    """True where ``values`` of ``mask`` say cloud (or another class that is not observed)."""
    if mask.kind == "qa_pixel":
        bits = sum(1 << int(b) for b in mask.masked)
        return (values.astype(np.int64) & bits) != 0
    if mask.kind == "values" and not mask.masked:
        return values != 0
    return np.isin(values, mask.masked)


class _S2Reader:
    """s2cloudless's clouds, computed once per scene at its working resolution, sampled by nearest."""

    def __init__(self, mask: CloudMask, src: RasterSource):
        self.mask = mask
        self.shape = (src.height, src.width)
        self.low = s2cloudless_clouds(mask, src)

    def clouds(self, window: Window | None, shape: tuple[int, int]) -> np.ndarray:
        r0, c0 = (0, 0) if window is None else (int(window.row_off), int(window.col_off))
        h, w = self.shape if window is None else (int(window.height), int(window.width))
        lh, lw = self.low.shape
        rows = ((r0 + (np.arange(shape[0]) + 0.5) * h / shape[0]) * lh / self.shape[0]).astype(np.int64)
        cols = ((c0 + (np.arange(shape[1]) + 0.5) * w / shape[1]) * lw / self.shape[1]).astype(np.int64)
        return self.low[np.ix_(np.clip(rows, 0, lh - 1), np.clip(cols, 0, lw - 1))]

    def close(self) -> None:
        pass


def s2cloudless_shape(src: RasterSource) -> tuple[int, int]:
    """(rows, cols) of the scene at s2cloudless's working resolution (never finer than the scene)."""
    res_x, res_y = (abs(v) for v in src.res)
    if src.crs.is_geographic:
        lat = (src.bounds.top + src.bounds.bottom) / 2
        res_x, res_y = res_x * 111_320.0 * math.cos(math.radians(lat)), res_y * 111_320.0
    f = rules.S2CLOUDLESS_RESOLUTION_M
    return (
        min(src.height, max(1, math.ceil(src.height * res_y / f))),
        min(src.width, max(1, math.ceil(src.width * res_x / f))),
    )


def s2cloudless_clouds(mask: CloudMask, src: RasterSource) -> np.ndarray:
    """The scene's clouds by s2cloudless at its working resolution (bool), cached per process."""
    shape = s2cloudless_shape(src)
    key = (mask.path, mask.bands, shape, tuple(src.transform))
    with _S2_LOCK:
        if key in _S2_CACHE:
            _S2_CACHE.move_to_end(key)
            return _S2_CACHE[key]
    reflectance = s2_reflectance(mask, src, shape)
    clouds = s2cloudless_probability(reflectance) > rules.S2CLOUDLESS_THRESHOLD
    with _S2_LOCK:
        _S2_CACHE[key] = clouds
        while len(_S2_CACHE) > 8:
            _S2_CACHE.popitem(last=False)
    return clouds


def s2_reflectance(mask: CloudMask, src: RasterSource, shape: tuple[int, int]) -> np.ndarray:
    """The ten bands as top-of-atmosphere reflectance (h, w, 10), decimated (average) to ``shape``.

    Integer L1C values are reflectance x 10000 unless the file gives a scale and offset.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    try:
        with rasterio.open(mask.path) as f:
            ds = f
            vrt = None
            if (
                f.crs != src.crs
                or not f.transform.almost_equals(src.transform)
                or f.shape != (src.height, src.width)
            ):
                vrt = WarpedVRT(
                    f,
                    crs=src.crs,
                    transform=src.transform,
                    width=src.width,
                    height=src.height,
                    resampling=Resampling.nearest,
                )
                ds = vrt
            data = ds.read(
                list(mask.bands),
                out_shape=(len(mask.bands), *shape),
                resampling=Resampling.average,
                masked=True,
            ).astype(np.float32)
            scales = [ds.scales[b - 1] for b in mask.bands]
            offsets = [ds.offsets[b - 1] for b in mask.bands]
            integer = np.dtype(ds.dtypes[mask.bands[0] - 1]).kind in "iu"
            if vrt is not None:
                vrt.close()
    except library_errors() as exc:
        raise InputError(
            "cloud_mask_unreadable",
            field="cloud_mask",
            path=src.path,
            mask="s2cloudless bands",
            detail=str(exc),
        ) from None
    values = data.filled(0).astype(np.float32)
    for i, (scale, offset) in enumerate(zip(scales, offsets, strict=True)):
        if integer and scale == 1 and offset == 0:
            values[i] /= 10000.0
        else:
            values[i] = values[i] * scale + offset
    return np.moveaxis(np.clip(values, 0, 1), 0, -1)


def s2cloudless_probability(reflectance: np.ndarray) -> np.ndarray:
    """Cloud probability (h, w) of ten-band reflectance (h, w, 10), with s2cloudless's advised smoothing."""
    from s2cloudless import S2PixelCloudDetector

    detector = S2PixelCloudDetector(
        threshold=rules.S2CLOUDLESS_THRESHOLD, average_over=4, dilation_size=2, all_bands=False
    )
    return detector.get_cloud_probability_maps(reflectance[None])[0]


# ----------------------------------------------------------------------------- the source
class MaskedSource(RasterSource):
    """A RasterSource whose validity leaves out the pixels its cloud mask calls not observed."""

    _clouds: _MaskReader | _S2Reader | None = None
    cloud_mask: CloudMask | None = None

    def __init__(self, path: str | os.PathLike, *, clouds: CloudMask | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if clouds is not None:
            self.set_clouds(clouds)

    def set_clouds(self, clouds: CloudMask | None) -> None:
        """Apply ``clouds`` from now on (clones apply it too)."""
        if self._clouds is not None:
            self._clouds.close()
            self._clouds = None
        self.cloud_mask = clouds
        self._init_args["clouds"] = clouds
        if clouds is not None:
            try:
                self._clouds = (
                    _S2Reader(clouds, self) if clouds.kind == "s2cloudless" else _MaskReader(clouds, self)
                )
            except BaseException:
                self.close()
                raise

    def _read(
        self, bands: Sequence[int], window: Window | None, out_shape: tuple[int, int] | None, during: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        values, valid = super()._read(bands, window, out_shape, during)
        if self._clouds is not None:
            try:
                valid = valid & ~self._clouds.clouds(window, (valid.shape[0], valid.shape[1]))
            except library_errors() as exc:
                raise InputError(
                    "cloud_mask_unreadable",
                    field="cloud_mask",
                    path=self.path,
                    mask=self._clouds.mask.label,
                    detail=str(exc),
                ) from None
        return values, valid

    def cloud_percent(self, window: Window | None = None) -> float | None:
        """Percent of the data (in ``window``) the mask leaves out, on a decimated read; None without a mask."""
        if self._clouds is None:
            return None
        h, w = (self.height, self.width) if window is None else (int(window.height), int(window.width))
        scale = max(1.0, max(h, w) / OVERVIEW_SIZE)
        shape = (max(1, round(h / scale)), max(1, round(w / scale)))
        _, data = RasterSource._read(
            self, list(dict.fromkeys(self.rgb_bands)), window, shape, "reading the cloud mask"
        )
        if not data.any():
            return None
        clouds = self._clouds.clouds(window, shape)
        return round(100.0 * float((data & clouds).sum()) / float(data.sum()), 3)

    def close(self) -> None:
        if self._clouds is not None:
            self._clouds.close()
            self._clouds = None
        super().close()


def open_masked(scene: Scene, read: ReadSpec, **kwargs: Any) -> MaskedSource:
    """The scene's raster (``raster.open_raster``'s arguments) with its cloud mask under ``read``."""
    src = MaskedSource(scene.path, **kwargs)
    try:
        src.set_clouds(resolve_mask(read, scene, src))
    except BaseException:
        src.close()
        raise
    return src


def cloud_percent(src: RasterSource, window: Window | None = None) -> float | None:
    """A scene's cloud percentage (None when it is read without a mask)."""
    return src.cloud_percent(window) if isinstance(src, MaskedSource) else None
