"""What tracing and vectorising read: a final mask, by blocks or by windows (the Mosaic, or not).

Protocols, so the tracer takes a ``Mosaic``, the read-only ``MosaicReader`` of another
process, or a raster's valid pixels (core.geometry.footprints) alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.windows import Window

    from .shapes import CrsLike


class MaskBlocks(Protocol):
    """A ``width x height`` uint8 mask (WATER, LAND, NODATA) read in blocks, row-major."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def iter_blocks(self, block: int) -> Iterator[tuple[Window, np.ndarray]]:
        """(window, mask of that window), each at most ``block`` px square."""
        ...


class GeoMaskBlocks(MaskBlocks, Protocol):
    """A mask in blocks with its place on the ground: what becomes polygons in map coordinates."""

    @property
    def transform(self) -> Affine: ...

    @property
    def crs(self) -> CrsLike | None: ...


class MaskWindows(Protocol):
    """A mask read by windows (a mosaic whose rows become final while chips come in)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def read_mask(self, window: Window) -> np.ndarray: ...
