"""The water-index run against the GDAL chain an analyst would script and against the read floor.

For every --sizes (default 4000, 10000, 20000 px) the script builds (once, cached under
--workdir) a SIZE x SIZE 4-band uint16 R,G,B,NIR GeoTIFF, 512 px tiles, deflate, with a
lake of radius 150 px in every 700 px cell (lakes cut by every kind of block seam), then
times, as separate commands in fresh processes, taking turns for --rounds rounds:

- tool:  ``python -m paligemma_qgis segment R out.gpkg --green 2 --nir 4 --threshold 0.2``
  (NDWI > 0.2, every default else: chips, mosaic, vectorising, GeoPackage);
- GDAL:  ``gdal_calc.py`` NDWI > 0.2 to a Byte GeoTIFF (land = nodata), then
  ``gdal_polygonize.py`` to a GeoPackage (4-connected, like the tool);
- floor: decoding every tile of the raster on 2 threads and nothing else (what no tool
  reading the file can beat).

It prints each round, then the medians with the ratios tool/GDAL and tool/floor and each
command's peak RSS (its child processes included), and checks that the tool and GDAL
found the same polygons (count and planar area; ``--check-masks`` also compares the two
masks pixel for pixel, untimed).
Times are wall clock of the whole command, Python start-up included, on a machine whose
load average is printed with each round: other work on it shows up as noise.

gdal_calc.py and gdal_polygonize.py (Debian: gdal-bin / python3-gdal) are needed only here;
benchmarks are not run by the tests.

    python scripts/bench_pipeline.py --sizes 4000,10000 --rounds 3
    python scripts/bench_pipeline.py --sizes 20000 --rounds 3      # builds a 2 GB raster once
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
THRESHOLD = 0.2
NDWI = f"(A.astype(numpy.float32)-B)/(A.astype(numpy.float32)+B)>{THRESHOLD}"


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


def read_floor(raster: str, threads: int = 2) -> float:
    """Decode every storage block once on ``threads`` threads (each its own handle); seconds."""
    import threading

    import rasterio

    with rasterio.open(raster) as ds:
        windows = [w for _, w in ds.block_windows(1)]
    # column bands, like the tool's readers: each thread decodes its own tiles of every tile row
    shares = [[w for w in windows if int(w.col_off) * threads // ds.width == k] for k in range(threads)]

    def decode(share: list) -> None:
        with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(raster) as src:
            for w in share:
                src.read(window=w)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=decode, args=(s,)) for s in shares]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return time.perf_counter() - t0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc), MB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total / 1024


def run(cmd: list[str], **kwargs) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one command in a fresh process.

    Peak RSS: the larger of the process's own peak and the sampled (every 20 ms) sum over it
    and its children, so a helper process (the tool's vectoriser) is counted too.
    """
    import threading

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, **kwargs)
        peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], tree_rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-2000:]}")
        return wall, max(usage.ru_maxrss / 1024, peak[0]), out.read().decode()


def tool_cmd(raster: Path, out: Path, extra: list[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paligemma_qgis",
        "segment",
        str(raster),
        str(out),
        "--green",
        "2",
        "--nir",
        "4",
        "--threshold",
        str(THRESHOLD),
        "--overwrite",
        "--json",
        *extra,
    ]


def gdal_chain(raster: Path, work: Path) -> tuple[float, float, Path, Path]:
    """gdal_calc.py then gdal_polygonize.py: (seconds, peak RSS MB, mask tif, gpkg)."""
    mask, gpkg = work / "gdal_ndwi.tif", work / "gdal_water.gpkg"
    for p in (mask, gpkg):
        p.unlink(missing_ok=True)
    calc = [
        "gdal_calc.py",
        "--quiet",
        "-A",
        str(raster),
        "--A_band=2",
        "-B",
        str(raster),
        "--B_band=4",
        f"--calc={NDWI}",
        "--type=Byte",
        "--NoDataValue=0",
        f"--outfile={mask}",
    ]
    t1, rss1, _ = run(calc)
    t2, rss2, _ = run(["gdal_polygonize.py", "-q", str(mask), "-f", "GPKG", str(gpkg), "water", "DN"])
    return t1 + t2, max(rss1, rss2), mask, gpkg


def planar(gpkg: Path, layer: str) -> tuple[int, float]:
    """(polygons, summed planar area) of a layer: the two tools' polygons must agree."""
    import pyogrio
    import shapely

    df = pyogrio.read_dataframe(gpkg, layer=layer, columns=[])
    return len(df), float(shapely.area(df.geometry.values).sum())


def check_masks(raster: Path, work: Path, gdal_mask: Path) -> str:
    """The tool's mask (--mask-tif) against gdal_calc's, pixel for pixel (untimed)."""
    import rasterio

    tif = work / "tool_mask.tif"
    run(tool_cmd(raster, work / "tool_check.gpkg", ["--mask-tif", str(tif)]), cwd=REPO)
    both = either = differ = 0
    with rasterio.open(tif) as a, rasterio.open(gdal_mask) as b:
        for _, w in a.block_windows(1):
            ta, tb = a.read(1, window=w) == 1, b.read(1, window=w) == 1
            both += int((ta & tb).sum())
            either += int((ta | tb).sum())
            differ += int((ta != tb).sum())
    for p in (tif, work / "tool_check.gpkg"):
        p.unlink(missing_ok=True)
    return f"masks: IoU {both / max(either, 1):.6f}, {differ} pixels differ"


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_size(size: int, work: Path, rounds: int, masks: bool, before: Path | None = None) -> dict:
    raster = work / f"bench_{size}.tif"
    if not raster.exists():
        t0 = time.perf_counter()
        proc = mp.get_context("spawn").Process(target=build, args=(raster, size))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"building {raster} failed")
        print(f"built {raster} ({raster.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    out = work / "tool_water.gpkg"
    rows = []
    for k in range(rounds):
        load_before = load()
        t_tool, rss_tool, text = run(tool_cmd(raster, out), cwd=REPO)
        summary = json.loads(text.strip().splitlines()[-1])
        t_gdal, rss_gdal, gdal_mask, gdal_gpkg = gdal_chain(raster, work)
        t_floor, rss_floor, text = run([sys.executable, __file__, "--floor-of", str(raster)])
        decode = float(text.split()[0])
        t_before = run(tool_cmd(raster, work / "before.gpkg"), cwd=before)[0] if before else float("nan")
        tool_polys, gdal_polys = planar(out, "water"), planar(gdal_gpkg, "water")
        same = tool_polys[0] == gdal_polys[0] and abs(tool_polys[1] - gdal_polys[1]) < 1e-6 * gdal_polys[1]
        rows.append(
            dict(
                tool=t_tool,
                gdal=t_gdal,
                floor=t_floor,
                rss_tool=rss_tool,
                rss_gdal=rss_gdal,
                rss_floor=rss_floor,
                chip_s=summary["details"]["chip_seconds"],
                run_s=summary["seconds"],
                before=t_before,
            )
        )
        print(
            f"{size} px round {k + 1}: tool {t_tool:.2f} s (run {summary['seconds']:.2f}, chip loop "
            f"{summary['details']['chip_seconds']:.2f}; {rss_tool:.0f} MB), GDAL {t_gdal:.2f} s "
            f"({rss_gdal:.0f} MB), floor {t_floor:.2f} s (decoding {decode:.2f}; {rss_floor:.0f} MB); "
            f"polygons {tool_polys[0]} / {gdal_polys[0]}{'' if same else ' DIFFERENT'}"
            + (f"; tool of {before} {t_before:.2f} s" if before else "")
            + f"; {load_before}",
            flush=True,
        )
        if not same:
            raise SystemExit(f"the tool and GDAL disagree: {tool_polys} vs {gdal_polys} (polygons, area)")
    if masks:
        print(f"{size} px {check_masks(raster, work, gdal_mask)}")
    for p in (out, gdal_mask, gdal_gpkg, work / "before.gpkg"):
        p.unlink(missing_ok=True)
    med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    med["size"], med["polygons"] = size, gdal_polys[0]
    return med


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4000,10000,20000", help="raster sides in pixels (comma list)")
    p.add_argument("--rounds", type=int, default=3, help="back-to-back rounds per size (medians reported)")
    p.add_argument("--workdir", default="/tmp/paligemma_bench", help="where the test rasters are cached")
    p.add_argument("--check-masks", action="store_true", help="also compare the masks pixel for pixel")
    p.add_argument(
        "--before",
        type=Path,
        help="another checkout of this repository (e.g. of the previous commit): its tool is timed "
        "in the same rounds, so before and after see the same machine load",
    )
    p.add_argument("--floor-of", help=argparse.SUPPRESS)  # internal: time the read floor of this raster
    args = p.parse_args()
    if args.floor_of:
        print(f"{read_floor(args.floor_of):.3f}")
        return 0
    missing = [c for c in ("gdal_calc.py", "gdal_polygonize.py") if shutil.which(c) is None]
    if missing:
        print(f"{' and '.join(missing)} not found: install GDAL's Python utilities (Debian: gdal-bin)")
        return 1
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPU cores, {load()}; medians of {args.rounds} rounds, wall s of each command")
    results = [
        bench_size(int(s), work, args.rounds, args.check_masks, args.before) for s in args.sizes.split(",")
    ]
    print()
    extra = " tool before | before/floor |" if args.before else ""
    print(
        f"| pixels | tool | GDAL chain | read floor | tool/GDAL | tool/floor | peak RSS tool / GDAL |{extra}"
    )
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.before else ""))
    for r in results:
        cells = f" {r['before']:.2f} s | {r['before'] / r['floor']:.2f} |" if args.before else ""
        print(
            f"| {r['size']}² | {r['tool']:.2f} s | {r['gdal']:.2f} s | {r['floor']:.2f} s | "
            f"{r['tool'] / r['gdal']:.2f} | {r['tool'] / r['floor']:.2f} | "
            f"{r['rss_tool']:.0f} / {r['rss_gdal']:.0f} MB |{cells}"
        )
    print(f"\n{load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
