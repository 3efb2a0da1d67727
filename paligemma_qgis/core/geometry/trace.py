"""Mask blocks -> polygons in pixel coordinates, seam pieces merged only with those they touch.

``Tracer`` takes the final mask block by block (any block layout) and traces water
(``== WATER``) and, optionally, the observed footprint (``!= NODATA``) with
``rasterio.features.shapes`` (4-connected) in *pixel* coordinates: integers, exactly
representable, so pieces of one lake cut by a block edge share their edges bit for bit.
At the end only the pieces that touch an inner block edge are merged, and only with the
pieces they touch (``merge_touching``): groups of two or three small pieces instead of one
union of every seam piece of the scene. The polygons are the same whatever the blocks.

``ChipRows`` tells, while chips are still being added in any order, which rows of the
mosaic are final; ``trace_background`` traces those rows in the background with a
``Tracer`` as the chip loop goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..progress import Progress, check_cancelled
from .mask_source import MaskBlocks
from .mosaic import NODATA, WATER

if TYPE_CHECKING:
    from rasterio.windows import Window
    from shapely import Polygon

    from ..inputs.grid import Chip, ChipGrid


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.r_[False, flags, False].view(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def polygon_pieces(mask: np.ndarray, row_off: int, col_off: int) -> list[Polygon]:
    """Polygons (with holes) of the True pixels of one block, in global pixel coordinates.

    GDAL's polygonizer costs the same for every pixel, set or not. A row (then, within a
    band of rows, a column) without a True pixel separates the polygons on its two sides
    (4-connectivity), so only the rectangles between empty rows and columns are traced:
    the same polygons, for a fraction of the pixels when water is sparse.
    """
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    out = []
    for r0, r1 in _runs(mask.any(axis=1)):
        band = mask[r0:r1]
        for c0, c1 in _runs(band.any(axis=0)):
            part = band[:, c0:c1]
            if part.all():  # a full rectangle: no polygonizer needed
                out.append(shapely.box(col_off + c0, row_off + r0, col_off + c1, row_off + r1))
                continue
            t = Affine.translation(col_off + c0, row_off + r0)
            for geom, _ in shapes(part.view(np.uint8), mask=part, connectivity=4, transform=t):
                shell, *holes = (shapely.linearrings(np.asarray(r, np.float64)) for r in geom["coordinates"])
                out.append(shapely.polygons(shell, holes=holes or None))
    return out


def touching_groups(pieces: np.ndarray) -> list[np.ndarray]:
    """Indices of each group of pieces that touch (share an edge or a corner), transitively."""
    import shapely

    left, right = shapely.STRtree(pieces).query(pieces, predicate="intersects")
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    return [np.array(g) for g in groups.values()]


def union_groups(pieces: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """The polygons of each group's union (collinear seam vertices dropped: exact in pixel space)."""
    import shapely

    merged = np.concatenate([shapely.get_parts(shapely.union_all(pieces[g])) for g in groups])
    merged = merged[shapely.get_type_id(merged) == 3]  # polygons only
    return shapely.simplify(merged, 0.0)


def merge_touching(pieces: list[Polygon]) -> np.ndarray:
    """Polygons of the union of ``pieces``: each group of pieces that touch is unioned on its own.

    Only pieces that intersect (share an edge or a corner) can change each other in a
    union, so the result equals one union of everything, at a fraction of its cost.
    """
    arr = np.array(pieces, dtype=object)
    if not len(arr):
        return arr
    return union_groups(arr, touching_groups(arr))


class Tracer:
    """Water (and observed) polygons of a ``width x height`` mask fed block by block."""

    def __init__(self, width: int, height: int, observed: bool = True):
        self.width, self.height, self.observed = int(width), int(height), observed
        self.inner: list[Polygon] = []  # water pieces inside their block: final as traced
        self.seam: list[Polygon] = []  # water pieces touching an inner block edge, not merged yet
        self.merged: list[np.ndarray] = []  # seam groups merged by ``settle``
        self.seen: list[Polygon] = []  # observed pieces (boxes for fully observed blocks)

    def add(self, win: Window, arr: np.ndarray) -> None:
        """One block of the final mask (uint8: WATER, land, NODATA) at window ``win``."""
        import shapely

        r0, c0 = int(win.row_off), int(win.col_off)
        h, w = arr.shape
        water = arr == WATER
        if water.any():
            r1, c1 = r0 + h, c0 + w
            pieces = polygon_pieces(water, r0, c0)
            b = shapely.bounds(np.array(pieces, dtype=object))
            on_seam = (
                ((b[:, 0] == c0) & (c0 > 0))
                | ((b[:, 2] == c1) & (c1 < self.width))
                | ((b[:, 1] == r0) & (r0 > 0))
                | ((b[:, 3] == r1) & (r1 < self.height))
            )
            for p, s in zip(pieces, on_seam, strict=True):
                (self.seam if s else self.inner).append(p)
        if self.observed:
            valid = arr != NODATA
            if valid.all():
                self.seen.append(shapely.box(c0, r0, c0 + w, r0 + h))
            elif valid.any():
                self.seen.extend(polygon_pieces(valid, r0, c0))

    def settle(self, below: int) -> None:
        """Merge the seam groups that nothing traced later can touch (``below``: rows traced so far).

        Blocks still to come hold rows >= ``below`` only, so a group none of whose pieces
        reaches row ``below`` is complete: merging it now spares the end of the run.
        """
        import shapely

        if not self.seam:
            return
        arr = np.array(self.seam, dtype=object)
        bottom = shapely.bounds(arr)[:, 3]
        done = [g for g in touching_groups(arr) if bottom[g].max() < below]
        if done:
            self.merged.append(union_groups(arr, done))
            keep = np.ones(len(arr), bool)
            keep[np.concatenate(done)] = False
            self.seam = list(arr[keep])

    def finish(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(water polygons, observed polygons or None), pixel coordinates, seams merged."""
        import shapely

        parts = [np.array(self.inner, dtype=object), *self.merged]
        if self.seam:
            parts.append(merge_touching(self.seam))
        polys = np.concatenate(parts)
        footprint = None
        if self.observed:
            union = (
                shapely.union_all(np.array(self.seen, dtype=object)) if self.seen else shapely.MultiPolygon()
            )
            footprint = shapely.get_parts(shapely.simplify(union, 0.0))
            footprint = footprint[shapely.get_type_id(footprint) == 3]
        return polys, footprint


def trace_blocks(
    source: MaskBlocks, block: int, progress: Progress | None = None, observed: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Trace a finished mosaic-like ``source`` (width, height, iter_blocks) in ``block`` px blocks."""
    import math

    import rasterio

    tracer = Tracer(source.width, source.height, observed)
    total = math.ceil(int(source.height) / block) * math.ceil(int(source.width) / block) + 1
    with rasterio.Env():  # one GDAL environment, not one per shapes() call
        for i, (win, arr) in enumerate(source.iter_blocks(block)):
            check_cancelled(progress)
            tracer.add(win, arr)
            if progress is not None:
                progress.report(i + 1, total, "vectorising water")
    check_cancelled(progress)
    result = tracer.finish()
    if progress is not None:
        progress.report(total, total, "vectorising water")
    return result


class ChipRows:
    """Which rows of a scene's mosaic are final: every chip over them was added or skipped.

    Chips arrive in any order (reader threads, batches); the mosaic's rows above the first
    grid row with chips still to come can no longer change.
    """

    def __init__(self, grid: ChipGrid) -> None:
        counts = grid.row_counts()  # (row offset, kept chips) per grid row, top to bottom
        ext = grid.extent
        top = int(ext.row_off) if ext is not None else 0
        self.n_cols = grid.n_cols
        self.first_row = grid.first_row  # grid index of counts[0]
        self.starts = [r - top for r, _ in counts]
        self.left = [n for _, n in counts]
        self.height = int(ext.height) if ext is not None else 0
        self.next = 0  # first grid row (index into counts) with chips to come
        self._advance()

    def _advance(self) -> None:
        while self.next < len(self.left) and self.left[self.next] == 0:
            self.next += 1

    @property
    def final(self) -> int:
        """Mosaic rows [0, final) are final."""
        return self.starts[self.next] if self.next < len(self.starts) else self.height

    def done(self, chip: Chip) -> bool:
        """Count one chip as added (or skipped); True when more rows became final."""
        i = int(chip.id) // self.n_cols - self.first_row
        self.left[i] -= 1
        if i != self.next or self.left[i]:
            return False
        self._advance()
        return True
