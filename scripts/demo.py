"""``make demo``: map water in a real NAIP scene (or a synthetic one) with the water-index engine.

Uses ../shared/data/rasters/opengeos_naip_m_4709963_se_14_1_20200831.tif (North Dakota
lakes, R,G,B,NIR) when it is there, otherwise writes a synthetic R,G,B,NIR scene with two
lakes and a river. Output: demo_output/water.gpkg (layers water, chips) and
demo_output/water_mask.tif, replaced on every run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("PALIGEMMA_QGIS_SHARED_DATA", REPO.parent / "shared" / "data"))
NAIP = SHARED / "rasters" / "opengeos_naip_m_4709963_se_14_1_20200831.tif"
OUT = REPO / "demo_output"


def synthetic_scene(path: Path) -> Path:
    """A 4-band uint8 R,G,B,NIR scene in UTM 33N with two lakes, a pond and a river."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.features import rasterize
    from shapely import affinity
    from shapely.geometry import LineString, Point

    width, height = 900, 700
    lakes = [
        affinity.scale(Point(260, 240).buffer(1.0, 64), 110, 80),
        Point(640, 380).buffer(70, 64),
        Point(780, 120).buffer(20, 32),
    ]
    xs = np.linspace(-10, width + 10, 300)
    river = LineString(np.column_stack([xs, 600 + 25 * np.sin(xs / 90)])).buffer(10)
    water = rasterize([*lakes, river], out_shape=(height, width)) > 0
    rng = np.random.default_rng(0)
    land, wet = (90, 110, 70, 180), (30, 60, 80, 15)
    data = np.stack(
        [
            np.clip(np.where(water, w, g) + rng.normal(0, 3, water.shape), 1, 254)
            for g, w in zip(land, wet, strict=True)
        ]
    ).astype("uint8")
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=4,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(5.0, 0, 500_000.0, 0, -5.0, 5_000_000.0),
        nodata=0,
        tiled=True,
        compress="deflate",
        photometric="minisblack",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(("red", "green", "blue", "nir"), start=1):
            dst.set_band_description(i, name)
    return path


def main() -> int:
    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    OUT.mkdir(exist_ok=True)
    if NAIP.is_file():
        raster, preset, what = NAIP, "naip", "NAIP scene, North Dakota (R,G,B,NIR)"
    else:
        raster, preset, what = synthetic_scene(OUT / "synthetic_rgbn.tif"), None, "synthetic R,G,B,NIR scene"
    print(f"demo: water-index engine on {what}: {raster}")
    options = segment_spec(
        raster=str(raster),
        output=str(OUT / "water.gpkg"),
        engine="water-index",
        preset=preset,
        mask_tif=str(OUT / "water_mask.tif"),
        min_area_m2=100.0,
        overwrite=True,
    )
    summary = segment_raster(options)
    print(f"demo: {summary.one_line()}")
    print(f"demo: water index {summary.details}")
    print(
        f"demo: output {summary.output} (layers 'water', 'chips', 'scenes' and the 'run' table), mask {summary.mask_tif}"
    )
    paligemma_demo(raster, preset)
    return 0


def paligemma_demo(raster: Path, preset: str | None) -> None:
    """The same scene with PaliGemma, when the user already has the model and vae-oid.npz locally."""
    from paligemma_qgis.core.errors import PaliGemmaQgisError
    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    try:
        from paligemma_qgis.core.model.hf_models import DEFAULT_MODEL, resolve_model_folder
        from paligemma_qgis.core.model.weights import find_vae

        find_vae()
        resolve_model_folder(DEFAULT_MODEL, offline=True)
    except (ImportError, PaliGemmaQgisError) as exc:
        from paligemma_qgis.cli.wording import cli_message  # the command line's words (--vae)

        said = cli_message(exc) if isinstance(exc, PaliGemmaQgisError) else str(exc)
        print(f"demo: PaliGemma step skipped: {said.splitlines()[0]}")
        print(
            "demo: to run it: accept the licence of google/paligemma2-3b-mix-224 on Hugging Face, "
            "`hf auth login`, `python -m paligemma_qgis weights download`, then `make demo` again"
        )
        return
    options = segment_spec(
        raster=str(raster),
        output=str(OUT / "water_paligemma.gpkg"),
        engine="paligemma",
        preset=preset,
        min_area_m2=100.0,
        overwrite=True,
    )
    summary = segment_raster(options)
    print(f"demo: PaliGemma {summary.one_line()}")
    print(f"demo: output {summary.output}")


if __name__ == "__main__":
    raise SystemExit(main())
