"""Benchmark: a 1,000,000 x 1,000,000 px raster is refused at once, or mapped within an AOI, in bounded memory.

The raster is a GDAL VRT declaring 10^12 pixels (4 uint8 bands, 10 m UTM) whose only data
is a small synthetic scene with lakes placed in its middle. Each run is the real command in
a fresh process; its wall time and peak RSS are printed. Goals: < 5 s and < 500 MB for
both the refusal (no AOI) and the AOI run.

    python scripts/bench_huge.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
SIZE = 1_000_000
X0, Y0, RES = 300_000.0, 10_000_000.0, 10.0  # UTM 33N, north of the equator, 10 m


def build(work: Path) -> tuple[Path, str]:
    """The VRT, and an AOI extent (EPSG:32633) around the data in its middle."""
    from synthetic_rasters import make_scene

    scene = make_scene(work / "middle.tif", width=800, height=600)
    off = SIZE // 2
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>0</NoDataValue>'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{scene.path}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="800" ySize="600"/><DstRect xOff="{off}" yOff="{off}" xSize="800" ySize="600"/>'
        "</SimpleSource></VRTRasterBand>"
        for b in range(1, 5)
    )
    vrt = work / "huge.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{SIZE}" rasterYSize="{SIZE}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>{X0}, {RES}, 0, {Y0}, 0, {-RES}</GeoTransform>{bands}</VRTDataset>"
    )
    x, y = X0 + off * RES, Y0 - off * RES
    return vrt, f"{x - 500},{y - 6500},{x + 8500},{y + 500},EPSG:32633"


def run(args: list[str]) -> tuple[int, float, float, str]:
    cmd = [sys.executable, "-m", "paligemma_qgis", "segment", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = (proc.stdout.read() + proc.stderr.read()).strip().splitlines()
    return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024, out[-1] if out else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "paligemma_bench_huge"))
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    vrt, aoi = build(work)
    for label, extra in (("no AOI (refused)", []), ("AOI of 900 x 700 px", ["--aoi", aoi])):
        out = work / "out.gpkg"
        out.unlink(missing_ok=True)
        code, wall, rss, last = run([str(vrt), str(out), "--preset", "naip", *extra])
        print(f"{SIZE:,} px square, {label}: exit {code}, {wall:.2f} s, peak RSS {rss:.0f} MB")
        print(f"    {last[:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
