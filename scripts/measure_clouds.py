#!/usr/bin/env python3
"""Clouds are not observed: the figures of issue 22, printed.

1. ``change`` on the clouded synthetic pairs of tests/cloudy_scenes.py (Sentinel-2 L2A with
   SCL, Landsat C2 with QA_PIXEL): gained, lost and unknown water against the truth, with the
   cloud mask the data has (auto) and without one (none); each scene's cloud_pct.
2. ``occurrence`` over the Sentinel-2 pair: observations of a clouded pixel.
3. s2cloudless on the Sen1Floods11 L1C chip (../shared/data/rasters), when the package is
   installed: its cloud fraction as the run uses it (160 m, averaged over 4, dilated by 2) and
   with the detector's own defaults at 10 m.

Usage: python scripts/measure_clouds.py [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def _pair(folder: Path, make) -> Path:
    folder.mkdir(parents=True)
    items = [
        make(folder, str(folder), "before", "2021-06-01", seed=1),
        make(folder, str(folder), "after", "2021-06-11", seed=2),
    ]
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def change_figures(tmp: Path) -> None:
    import pyogrio
    from cloudy_scenes import CLOUD, CRS, Grid, landsat_item, s2_item, truth

    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec
    from paligemma_qgis.core.temporal.change import ChangeOptions, water_change
    from paligemma_qgis.core.temporal.occurrence import OccurrenceOptions, water_occurrence

    print("change on clouded synthetic pairs (areas in km2; error against the truth)")
    for name, make, grid in (
        ("Sentinel-2 L2A + SCL", s2_item, Grid(10)),
        ("Landsat C2 + QA_PIXEL", landsat_item, Grid(30)),
    ):
        items = _pair(tmp / name.split()[0], make)
        want = truth(grid)
        print(f"  {name}: truth gained {want['gained'] / 1e6:.4f}, lost {want['lost'] / 1e6:.4f}, "
              f"clouded water {want['unknown'] / 1e6:.4f}, clouded {want['clouded'] / 1e6:.3f}")  # fmt: skip
        for mode in ("auto", "none"):
            run = items.parent / f"run_{mode}.gpkg"
            segment_raster(segment_spec(raster=str(items), output=str(run), cloud_mask=mode))
            out = items.parent / f"change_{mode}.gpkg"
            water_change(ChangeOptions(after=str(run), before=str(run), before_date="2021-06-01",
                                       after_date="2021-06-11", output=str(out)))  # fmt: skip
            s = pyogrio.read_dataframe(out, layer="summary")
            got = dict(zip(s["class"], s["area_m2"], strict=True))
            pct = list(pyogrio.read_dataframe(run, layer="scenes")["cloud_pct"])
            parts = []
            for key in ("gained", "lost", "unknown"):
                err = "" if not want[key] else f" ({100 * (got[key] - want[key]) / want[key]:+.1f} %)"
                parts.append(f"{key} {got[key] / 1e6:.4f}{err}")
            print(f"    cloud mask {mode:4}: {', '.join(parts)}; cloud_pct {pct}")
            if make is s2_item:
                occ = items.parent / f"occurrence_{mode}.tif"
                water_occurrence(
                    OccurrenceOptions(inputs=[str(run)], output=str(occ), crs=CRS, resolution=10.0)
                )
                import rasterio

                with rasterio.open(occ) as ds:
                    row, col = ds.index(CLOUD.centroid.x, CLOUD.centroid.y)
                    obs = ds.read(2)[row, col]
                print(f"    occurrence ({mode}): a clouded pixel has {obs:.0f} observation(s) of 2 dates")


def s2cloudless_figures(data: Path) -> None:
    chip = data / "rasters" / "sen1floods11_Spain_7370579_S2Hand.tif"
    try:
        import s2cloudless  # noqa: F401
    except ImportError:
        print("s2cloudless: not installed (pip install s2cloudless)")
        return
    if not chip.exists():
        print(f"s2cloudless: {chip} not found")
        return
    import numpy as np
    from s2cloudless import S2PixelCloudDetector

    from paligemma_qgis.core.inputs.cloud_mask import open_masked, s2_reflectance
    from paligemma_qgis.core.inputs.scene import Scene
    from paligemma_qgis.core.specs import ReadSpec

    scene = Scene(chip.stem, str(chip), str(chip))
    with open_masked(scene, ReadSpec(cloud_mask="s2cloudless")) as src:
        pct = src.cloud_percent()
        mask = src.cloud_mask
        assert mask is not None
        full = s2_reflectance(mask, src, (src.height, src.width))
    default = S2PixelCloudDetector(all_bands=False)  # threshold 0.4, average_over 1, dilation 1
    prob = default.get_cloud_probability_maps(full[None])[0]
    valid = full.any(axis=-1)
    print(f"s2cloudless on {chip.name} (512 x 512 px, 10 m, L1C):")
    print(f"  as the run uses it (160 m, average 4, dilation 2): {pct:.2f} % of the valid pixels are clouds")
    frac = float((prob[valid] > 0.4).mean() * 100)
    print(f"  detector defaults at 10 m: {frac:.2f} % clouds; cloud probability median {np.median(prob[valid]):.3f}, "
          f"99th percentile {np.percentile(prob[valid], 99):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        change_figures(Path(tmp))
    s2cloudless_figures(args.data)


if __name__ == "__main__":
    main()
