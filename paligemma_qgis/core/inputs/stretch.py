"""The scene stretch: 16-bit and float imagery to 8 bits, with one set of percentiles per scene.

Per-chip stretching makes seams and turns a calm lake into noise, so the low and high
values of each RGB band are percentiles over the valid pixels of one decimated read of the
whole scene, computed once and shared by every chip (and every reading thread, and every
Ray task, which receive them with ``Stretch.of``). 8-bit data is shown as is. 16-bit integer
data goes through a 65536-entry lookup table per band, float data through the formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# 16-bit integer types are stretched through a 65536-entry lookup table per band.
LUT_DTYPES = ("uint16", "int16")


@dataclass(frozen=True, eq=False)
class Stretch:
    """(low, high) per RGB band, and for 16-bit integer data their lookup tables."""

    low: np.ndarray  # (3,) float64
    high: np.ndarray  # (3,) float64
    luts: np.ndarray | None = None  # (3, 65536) uint8, indexed by the raw 16 bits

    @classmethod
    def of(cls, low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray, dtype: str) -> Stretch:
        """A known stretch (from another process, or percentiles) for data of ``dtype``."""
        lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
        luts = None
        if dtype in LUT_DTYPES:
            # Indexed by the raw 16 bits (an int16 array viewed as uint16): one np.take per band.
            values = np.arange(65536, dtype=np.uint16).view(dtype).astype(np.float64)
            luts = np.stack(
                [np.clip((values - lo[i]) / (hi[i] - lo[i]) * 255.0 + 0.5, 0, 255) for i in range(3)]
            ).astype(np.uint8)
        return cls(lo, hi, luts)

    def pairs(self) -> list[tuple[float, float]]:
        """(low, high) per RGB band, as plain floats."""
        return [(float(a), float(b)) for a, b in zip(self.low, self.high, strict=True)]


def percentile_bounds(
    data: np.ndarray, valid: np.ndarray, positions: Sequence[int], percentiles: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per RGB band: ``percentiles`` of ``data[p]`` over valid, finite pixels.

    ``positions``: the index in ``data`` of each RGB band. A band without valid pixels, or a
    flat one, gets a range of one so the stretch never divides by zero.
    """
    lo_p, hi_p = percentiles
    lo = np.zeros(3, np.float64)
    hi = np.ones(3, np.float64)
    for i, p in enumerate(positions):
        v = data[p][valid]
        v = v[np.isfinite(v)]
        if v.size:
            lo[i], hi[i] = np.percentile(v, [lo_p, hi_p])
        if hi[i] <= lo[i]:
            hi[i] = lo[i] + 1.0
    return lo, hi


def render_rgb(
    values: np.ndarray, valid: np.ndarray, positions: Sequence[int], dtype: str, stretch: Stretch | None
) -> np.ndarray:
    """8-bit (h, w, 3) rendering of ``values[positions]``; 0 where invalid.

    ``stretch`` is required unless ``dtype`` is uint8 (shown as is).
    """
    h, w = valid.shape
    rgb = np.empty((h, w, 3), np.uint8)
    for i, p in enumerate(positions):
        band = values[p]
        if dtype == "uint8":
            rgb[..., i] = band
        elif stretch is None:
            raise ValueError(f"{dtype} data needs a stretch to be rendered")
        elif stretch.luts is not None:
            rgb[..., i] = np.take(stretch.luts[i], band.astype(dtype, copy=False).view(np.uint16))
        else:
            scaled = (band.astype(np.float32) - stretch.low[i]) * (255.0 / (stretch.high[i] - stretch.low[i]))
            np.nan_to_num(scaled, copy=False, nan=0.0)
            rgb[..., i] = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    if not valid.all():
        rgb[~valid] = 0
    return rgb
