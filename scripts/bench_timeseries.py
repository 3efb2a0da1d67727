"""Time ``change`` and ``occurrence`` on synthetic maps of region size; prints numbers.

    .venv/bin/python scripts/bench_timeseries.py [--lakes 19600] [--dates 24] [--size 4000]

change: two maps of LAKES square lakes each (the after map shifted by a quarter lake), in
one scene footprint. occurrence: DATES dated observations of a SIZE x SIZE px grid (10 m)
with 300 lakes whose size varies with the season and a cloud hole every third date.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from water_series import SceneTruth, pixel_box, write_run  # noqa: E402

from paligemma_qgis.core.temporal.change import water_change  # noqa: E402
from paligemma_qgis.core.temporal.occurrence import water_occurrence  # noqa: E402
from paligemma_qgis.core.temporal.options import ChangeOptions, OccurrenceOptions  # noqa: E402

T = Affine(10, 0, 500_000, 0, -10, 5_000_000)  # UTM 33N, 10 m


def bench_change(folder: Path, lakes: int) -> None:
    side = math.ceil(math.sqrt(lakes))
    size = side * 28 + 40
    frame = pixel_box(T, 0, 0, size, size)

    def lake_map(offset: int) -> list:
        return [
            pixel_box(T, 28 * i + offset, 28 * j + offset, 28 * i + offset + 20, 28 * j + offset + 20)
            for i in range(side)
            for j in range(side)
        ][:lakes]

    a = write_run(folder / "a.gpkg", "EPSG:32633", [SceneTruth("a", "2020-01-01", lake_map(0), frame)])
    b = write_run(folder / "b.gpkg", "EPSG:32633", [SceneTruth("b", "2021-01-01", lake_map(5), frame)])
    t = time.perf_counter()
    summary = water_change(ChangeOptions(before=str(a), after=str(b), output=str(folder / "c.gpkg")))
    seconds = time.perf_counter() - t
    print(
        f"change: {lakes} vs {lakes} lakes -> {summary.polygons['gained']} gained / "
        f"{summary.polygons['lost']} lost / {summary.polygons['persistent']} persistent polygons "
        f"in {seconds:.2f} s"
    )


def bench_occurrence(folder: Path, dates: int, size: int) -> None:
    rng = np.random.default_rng(0)
    frame = pixel_box(T, 0, 0, size, size)
    centres = rng.uniform(50, size - 50, (300, 2))
    scenes = []
    for i in range(dates):
        radius = np.round(rng.uniform(5, 40, len(centres)) * (1 + 0.5 * math.sin(i / 3)))
        lakes = [pixel_box(T, x - r, y - r, x + r, y + r) for (x, y), r in zip(centres, radius, strict=True)]
        footprint = frame
        if i % 3 == 0:  # a cloud
            x, y = rng.uniform(0, size * 0.75, 2)
            footprint = frame - pixel_box(T, x, y, x + size / 5, y + size / 5)
        lakes = [lake & footprint for lake in lakes]
        scenes.append(SceneTruth(f"s{i}", f"2020-{1 + i % 12:02d}-{1 + i // 12:02d}", lakes, footprint))
    run = write_run(folder / "run.gpkg", "EPSG:32633", scenes, transform=T, width=size, height=size)
    t = time.perf_counter()
    summary = water_occurrence(
        OccurrenceOptions(
            inputs=(str(run),), output=str(folder / "occ.tif"), classes=str(folder / "classes.gpkg")
        )
    )
    seconds = time.perf_counter() - t
    print(
        f"occurrence: {summary.observations} observations, {summary.width} x {summary.height} px, "
        f"with classes, in {seconds:.2f} s ({summary.width * summary.height * summary.observations / seconds / 1e6:.0f} "
        "M pixel-observations/s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lakes", type=int, default=19600)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--size", type=int, default=4000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_timeseries_") as tmp:
        bench_change(Path(tmp), args.lakes)
        bench_occurrence(Path(tmp), args.dates, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
