"""Benchmark the non-model stages of segment_raster: read + stretch + mosaic + vectorize.

Builds (once, cached) a SIZE x SIZE 4-band uint16 R,G,B,NIR GeoTIFF, tiled 512 and
deflate-compressed, with lakes on a regular pattern, then runs the pipeline in a fresh
process with a model-free segmenter (the water index with a fixed threshold) and prints
chips/s and the process's peak RSS. Goals: >= 500 chips/s for these stages on a 2-core
machine; peak RSS flat in the raster size (< 1.5 GB at 20000 px).

    python scripts/bench_pipeline.py --size 20000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(path: Path, size: int, block: int = 512) -> None:
    """Write the scene block by block (never the whole raster in memory)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10.0, 0, 300_000.0, 0, -10.0, 5_500_000.0),
        nodata=0,
        tiled=True,
        blockxsize=block,
        blockysize=block,
        compress="deflate",
        zlevel=1,
        photometric="minisblack",
        BIGTIFF="YES",
    )
    land = np.array([900, 1100, 700, 2600], np.float32)[:, None, None]
    water = np.array([300, 600, 800, 150], np.float32)[:, None, None]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 20, (4, block, block)).astype(np.float32)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                yy, xx = np.mgrid[r : r + h, c : c + w]
                # a lake of radius 150 px centred in every 700 px cell
                d2 = (yy % 700 - 350) ** 2 + (xx % 700 - 350) ** 2
                is_water = d2 < 150**2
                data = np.where(is_water, water, land) + np.roll(noise, (r + c) % block, axis=2)[:, :h, :w]
                dst.write(np.clip(data, 1, 65535).astype("uint16"), window=Window(c, r, w, h))
    tmp.rename(path)


def measure(raster: str, out: str, batch_size: int, queue) -> None:
    """One pipeline run in this (fresh) process; reports its summary and peak RSS."""
    from paligemma_qgis.core.engine.water_index import WaterIndexSegmenter
    from paligemma_qgis.core.pipeline import SegmentOptions, segment_raster

    seg = WaterIndexSegmenter(green=2, nir=4, threshold=0.2)
    opts = SegmentOptions(raster=raster, output=out, overwrite=True, batch_size=batch_size, overlap=32)
    t0 = time.perf_counter()
    s = segment_raster(opts, segmenter=seg)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(dict(summary=s.to_dict(), wall=wall, rss_mb=rss_mb))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=20000, help="raster side in pixels (default 20000)")
    p.add_argument("--workdir", default="/tmp/paligemma_bench", help="where the test raster is cached")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    raster = work / f"bench_{args.size}.tif"
    ctx = mp.get_context("spawn")
    if not raster.exists():
        t0 = time.perf_counter()
        proc = ctx.Process(target=build, args=(raster, args.size))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            return 1
        print(f"built {raster} ({raster.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(str(raster), str(work / "out.gpkg"), args.batch_size, queue))
    proc.start()
    result = queue.get()
    proc.join()
    s = result["summary"]
    chip_s = s["details"]["chip_seconds"]
    total_chips = s["chips"] + s["skipped"]
    print(
        f"size {args.size} px, 4 x uint16: {s['chips']} chips, {s['polygons']} polygons; "
        f"read+stretch+segment(index)+mosaic {total_chips / chip_s:.0f} chips/s ({chip_s:.1f} s); "
        f"whole run incl. stats, vectorize, GeoPackage {s['seconds']:.1f} s "
        f"= {s['chips'] / s['seconds']:.0f} chips/s; peak RSS {result['rss_mb']:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
