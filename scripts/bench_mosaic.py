"""Micro-benchmark of the mosaic and the vectoriser (prints numbers; no pass/fail).

    .venv/bin/python scripts/bench_mosaic.py                 # 2500 and 10000 px scenes
    .venv/bin/python scripts/bench_mosaic.py --sizes 20000   # any sizes

Each size runs in a fresh child process so its peak RSS (resource.getrusage) is its own.
The synthetic scene has thousands of small lakes (a product of sines, thresholded) plus one
large lake spanning four 2048-px blocks, with a nodata corner; 224-px chips overlap by 32 px.
Only the ``Mosaic.add`` calls are timed for chips/s (chip synthesis is excluded).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # KiB on Linux


def rss_now_mb() -> float:
    """Current RSS (Linux /proc; NaN elsewhere): peak RSS alone cannot tell phases apart."""
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * resource.getpagesize() / 2**20, 1)
    except OSError:
        return float("nan")


def synth(r0: int, c0: int, h: int, w: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Water and valid masks of one window of the synthetic scene (never the full raster)."""
    y, x = np.mgrid[r0 : r0 + h, c0 : c0 + w].astype(np.float32)
    f = np.sin(x / 23.0) * np.cos(y / 31.0) + 0.3 * np.sin(x / 97.0 + y / 61.0)
    lakes = f > 0.85
    big = (x - size / 2) ** 2 + (y - size / 2) ** 2 < (0.15 * size) ** 2
    valid = (x + y) > size * 0.1  # a nodata corner
    return (lakes | big) & valid, valid


def run_one(size: int, chip: int, overlap: int, block: int) -> dict:
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window

    from paligemma_qgis.core.geometry.mosaic import Mosaic
    from paligemma_qgis.core.geometry.vectorize import vectorize_mosaic, write_geopackage

    out: dict = {"size": size, "chip": chip, "overlap": overlap, "block": block}
    stride = chip - overlap
    starts = list(range(0, size - chip, stride)) + [size - chip]  # last chip snapped to the edge
    transform = Affine(10, 0, 500_000, 0, -10, 6_650_000)
    out["rss_imports_mb"] = peak_rss_mb()

    def record(name: str, t0: float) -> None:
        out[f"{name}_s"] = round(time.perf_counter() - t0, 2)
        out[f"{name}_peak_rss_mb"] = peak_rss_mb()
        out[f"{name}_rss_now_mb"] = rss_now_mb()

    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosaic(size, size, transform, CRS.from_epsg(32633), workdir=tmp) as m,
    ):
        t_add = 0.0
        n = 0
        for r0 in starts:
            for c0 in starts:
                water, valid = synth(r0, c0, chip, chip, size)
                t = time.perf_counter()
                m.add(Window(c0, r0, chip, chip), water, valid)
                t_add += time.perf_counter() - t
                n += 1
        out.update(chips=n, chips_per_s=round(n / t_add))
        record("add", time.perf_counter() - t_add)

        t = time.perf_counter()
        stats = m.stats(block=block)
        record("stats", t)
        out["water_km2"] = round(stats["water_area_m2"] / 1e6, 2)

        t = time.perf_counter()
        m.write_mask_tif(Path(tmp) / "mask.tif", block=block)
        record("mask_tif", t)
        out["mask_tif_mb"] = round((Path(tmp) / "mask.tif").stat().st_size / 1e6, 2)

        t = time.perf_counter()
        gdf = vectorize_mosaic(m, block=block)
        record("vectorize", t)
        out["polygons"] = len(gdf)
        out["largest_polygon_km2"] = round(float(gdf.area_m2.max() / 1e6 if len(gdf) else 0.0), 2)

        t = time.perf_counter()
        write_geopackage(Path(tmp) / "water.gpkg", {"water": gdf})
        record("gpkg", t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 10000])
    ap.add_argument("--chip", type=int, default=224)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.sizes[0], args.chip, args.overlap, args.block)))
        return
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--sizes", str(size), "--chip", str(args.chip)]
        cmd += ["--overlap", str(args.overlap), "--block", str(args.block)]
        res = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        )
        print(f"\n== {size} x {size} px, {args.chip}-px chips, overlap {args.overlap}, block {args.block}")
        for k, v in res.items():
            print(f"  {k:24s} {v}")


if __name__ == "__main__":
    main()
