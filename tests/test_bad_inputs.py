"""Bad inputs and injected faults, through the real command line as a user runs it.

Each case is one row of ``CASES``: the command (``{in}``: the folder of tiny synthetic inputs
made once for the module, ``{out}``: the case's own output folder), an optional fault
(a signal mid-run, a file size limit as a full disk, a read-only output folder), and what
must hold afterwards:

- the exit code;
- an error case prints exactly one line on stderr (progress bars aside), ``error: ...``,
  naming the file(s) at fault, and no traceback; library warnings never add lines;
- nothing is left behind: the output folder holds exactly what it held before (plus, for a
  run that succeeds, its outputs), ``$TMPDIR`` is empty, and the inputs are untouched;
- an existing output (``old``) is byte-identical afterwards.

Add a case by adding a row (and, when it needs one, an input to ``_make_inputs``). One file:
the table, the inputs it names and the one runner that checks every row belong together.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
OLD_BYTES = b"an output from an earlier run: must survive byte for byte\n"
_BAR = re.compile(r"^\s*[\w-]+:\s+\d+%\|")  # a tqdm progress line


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    rc: int = 1
    names: tuple[str, ...] = ()  # paths (templates) the error line must name
    says: str = ""  # regex the error line (or, for rc 0, stdout) must match
    old: str | None = None  # "file" or "folder/": an output made before the run, kept byte for byte
    new: tuple[str, ...] = ()  # outputs a successful run adds (names in {out})
    fault: str = ""  # "sigint", "sigterm", "fsize:<bytes>", "readonly"
    warns: str = ""  # regex of the only stderr line allowed on success (e.g. a read-error count)


VAE = ("--vae", "{in}/vae.npz", "--allow-custom-vae")
SEG = ("segment", "{in}/scene.tif", "{out}/o.gpkg", "--preset", "naip")
EXP = ("export", "{in}/scene.tif", "{out}/x", *VAE)
PAIRS = ("export-pairs", "{out}/x", *VAE)
READ_FAILED = r"read failed in rows \d+-\d+, cols \d+-\d+ .*truncated or corrupt"

CASES = [
    # ---------------------------------------------------------------- segment: the raster
    Case(
        "segment-truncated-tiles",
        ("segment", "{in}/trunc.tif", "{out}/o.gpkg", "--preset", "naip", "--overwrite"),
        names=("{in}/trunc.tif",),
        says=r"read failed while reading scene statistics .*truncated or corrupt; --on-read-error skip",
        old="o.gpkg",
    ),
    Case(
        "segment-truncated-strips",
        ("segment", "{in}/strip_trunc.tif", "{out}/o.gpkg", "--bands", "1,2,3", "--nir", "4"),
        names=("{in}/strip_trunc.tif",),
        says=r"read failed while .*TIFFReadEncodedStrip",
    ),
    Case(
        "segment-truncated-skip",
        (
            "segment",
            "{in}/trunc.tif",
            "{out}/o.gpkg",
            "--preset",
            "naip",
            "--on-read-error",
            "skip",
            "--json",
        ),
        rc=0,
        says=r'"read_errors": [1-9]',
        new=("o.gpkg",),
        warns=r"^warning: .*trunc.tif: \d+ read\(s\) hit unreadable blocks, mapped as nodata$",
    ),
    Case(
        "segment-empty-file",
        ("segment", "{in}/empty.tif", "{out}/o.gpkg"),
        names=("{in}/empty.tif",),
        says="cannot open as a raster",
    ),
    Case(
        "segment-text-file",
        ("segment", "{in}/text.tif", "{out}/o.gpkg"),
        names=("{in}/text.tif",),
        says="cannot open as a raster",
    ),
    Case(
        "segment-png-without-georeference",  # and no NotGeoreferencedWarning line before it
        ("segment", "{in}/plain.png", "{out}/o.gpkg"),
        names=("{in}/plain.png",),
        says="has no CRS",
    ),
    Case(
        "segment-missing-raster",
        ("segment", "{in}/nope.tif", "{out}/o.gpkg"),
        names=("{in}/nope.tif",),
        says="not found",
    ),
    Case(
        "segment-folder-as-raster",
        ("segment", "{in}/p_ok", "{out}/o.gpkg"),
        names=("{in}/p_ok",),
        says="folder holds no raster",
    ),
    Case(
        "segment-aoi-corrupt",
        (*SEG, "--aoi", "{in}/garbage.gpkg"),
        names=("{in}/garbage.gpkg",),
        says="cannot read area of interest",
    ),
    Case(
        "segment-aoi-truncated-gpkg",
        (*SEG, "--aoi", "{in}/trunc.gpkg"),
        names=("{in}/trunc.gpkg",),
        says="corrupt or truncated SQLite",
    ),
    Case(
        "segment-aoi-geojson-in-metres",
        (*SEG, "--aoi", "{in}/metres.geojson"),
        names=("{in}/metres.geojson",),
        says="do not fit its CRS",
    ),
    Case(
        "segment-aoi-elsewhere",
        (*SEG, "--aoi", "{in}/far.gpkg"),
        names=("{in}/far.gpkg",),
        says="does not overlap",
    ),
    Case(
        "segment-output-exists",
        SEG,
        names=("{out}/o.gpkg",),
        says=r"output exists; use --overwrite",
        old="o.gpkg",
    ),
    Case(
        "segment-output-folder-read-only",
        ("segment", "{in}/scene.tif", "{out}/ro/o.gpkg", "--preset", "naip"),
        names=("{out}/ro/o.gpkg",),
        says="cannot write to .*Permission denied",
        fault="readonly",
    ),
    Case(
        "segment-disk-full",
        ("segment", "{in}/small.tif", "{out}/o.gpkg", "--preset", "naip", "--overwrite"),
        names=("{out}/o.gpkg",),
        says="cannot write",
        old="o.gpkg",
        fault="fsize:60000",
    ),
    Case(
        "segment-sigint",
        ("segment", "{in}/long.tif", "{out}/o.gpkg", "--preset", "naip", "--overlap", "200", "--overwrite"),
        rc=130,
        says="^cancelled: no output written$",
        old="o.gpkg",
        fault="sigint",
    ),
    Case(
        "segment-sigterm",
        ("segment", "{in}/long.tif", "{out}/o.gpkg", "--preset", "naip", "--overlap", "200", "--overwrite"),
        rc=130,
        says="^cancelled: no output written$",
        old="o.gpkg",
        fault="sigterm",
    ),
    # ---------------------------------------------------------------- segment: region runs
    Case(
        "segment-huge-vrt-without-aoi",  # 10^12 px: refused before any chip, in well under a second
        ("segment", "{in}/huge.vrt", "{out}/o.gpkg", "--preset", "naip"),
        names=("{in}/huge.vrt",),
        says=r"1,000,000 x 1,000,000 px to map is more than .* --aoi, or raise --max-pixels",
    ),
    Case(
        "segment-max-pixels",
        (*SEG, "--max-pixels", "1000"),
        names=("{in}/scene.tif",),
        says="more than the 1,000 px limit",
    ),
    Case(
        "segment-list-names-a-missing-raster",
        ("segment", "{in}/scenes.txt", "{out}/o.gpkg", "--preset", "naip"),
        names=("missing_scene.tif",),
        says="input not found",
    ),
    Case(
        "segment-glob-matches-nothing",
        ("segment", "{in}/nothing_*.tif", "{out}/o.gpkg"),
        names=("nothing_*.tif",),
        says="no file matches this pattern",
    ),
    Case(
        "segment-stac-without-the-bands",
        ("segment", "{in}/item.json", "{out}/o.gpkg"),
        names=("item.json#T1",),
        says=r"no asset holds the band green \(its bands: red\); choose others with --stac-bands",
    ),
    Case(
        "segment-json-that-is-not-stac",
        ("segment", "{in}/not_stac.json", "{out}/o.gpkg"),
        names=("{in}/not_stac.json",),
        says="the collection holds no STAC item with assets",
    ),
    Case(
        "segment-mask-tif-with-two-scenes",
        (
            "segment",
            "{in}/scene.tif",
            "{in}/small.tif",
            "{out}/o.gpkg",
            "--preset",
            "naip",
            "--mask-tif",
            "{out}/m.tif",
        ),
        names=("{out}/m.tif",),
        says="a mask GeoTIFF needs a single input raster",
    ),
    Case(
        "segment-every-scene-fails",  # the first scene's error, nothing written
        ("segment", "{in}/text.tif", "{in}/empty.tif", "{out}/o.gpkg"),
        names=("{in}/text.tif",),
        says="cannot open as a raster",
    ),
    Case(
        "segment-model-missing-many-scenes",  # the engine's error, said once: not a failure per scene
        (
            "segment",
            "{in}/scene.tif",
            "{in}/small.tif",
            "{out}/o.gpkg",
            "--engine",
            "paligemma",
            "--model",
            "{in}/no_model",
            "--device",
            "cpu",
            *VAE,
        ),
        names=("{in}/no_model",),
        says="does not exist",
    ),
    Case(
        "revectorize-not-a-run",
        ("revectorize", "{in}/good.gpkg", "{out}/o.gpkg"),
        names=("{in}/good.gpkg",),
        says="not the output of a segment run",
    ),
    # ---------------------------------------------------------------- export
    Case(
        "export-truncated-raster",
        ("export", "{in}/trunc.tif", "{out}/x", "--labels", "{in}/good.gpkg", *VAE, "--overwrite"),
        names=("{in}/trunc.tif",),
        says=READ_FAILED,
        old="x/",
    ),
    Case(
        "export-labels-corrupt",
        (*EXP, "--labels", "{in}/garbage.gpkg"),
        names=("{in}/garbage.gpkg",),
        says="cannot read water labels as vectors",
    ),
    Case(
        "export-labels-truncated-gpkg",
        (*EXP, "--labels", "{in}/trunc.gpkg"),
        names=("{in}/trunc.gpkg",),
        says="corrupt or truncated SQLite",
    ),
    Case(
        "export-labels-self-intersecting-strict",
        (*EXP, "--labels", "{in}/bowtie.gpkg", "--strict-labels"),
        names=("{in}/bowtie.gpkg",),
        says=r"1 invalid label polygon\(s\), the first: Self-intersection",
    ),
    Case(
        "export-labels-self-intersecting-repaired",
        (*EXP, "--labels", "{in}/bowtie.gpkg"),
        rc=0,
        says=r"repaired 1 invalid label polygon\(s\) with make_valid",
        new=("x",),
    ),
    Case(
        "export-labels-geojson-in-metres",
        (*EXP, "--labels", "{in}/metres.geojson"),
        names=("{in}/metres.geojson",),
        says="do not fit its CRS",
    ),
    Case(
        "export-labels-points",
        (*EXP, "--labels", "{in}/points.gpkg"),
        names=("{in}/points.gpkg",),
        says="holds no polygons",
    ),
    Case(
        "export-labels-elsewhere",
        (*EXP, "--labels", "{in}/far.gpkg"),
        names=("{in}/far.gpkg", "{in}/scene.tif"),
        says="do not overlap",
    ),
    Case(
        "export-label-mask-truncated",
        (*EXP, "--labels", "{in}/trunc.tif"),
        names=("{in}/trunc.tif",),
        says=READ_FAILED.replace("truncated", "label mask is truncated"),
    ),
    Case(
        "export-vae-truncated",
        ("export", "{in}/scene.tif", "{out}/x", "--labels", "{in}/good.gpkg", "--vae", "{in}/vae_trunc.npz"),
        names=("{in}/vae_trunc.npz",),
        says=r"not a readable \.npz file",
    ),
    Case(
        "export-vae-pickled-array",
        ("export", "{in}/scene.tif", "{out}/x", "--labels", "{in}/good.gpkg", "--vae", "{in}/vae_pickle.npz"),
        names=("{in}/vae_pickle.npz",),
        says="allow_pickle",
    ),
    Case(
        "export-output-not-empty",
        (*EXP, "--labels", "{in}/good.gpkg"),
        names=("{out}/x",),
        says="not empty; use --overwrite to replace it",
        old="x/",
    ),
    Case(
        "export-output-not-an-export",
        ("export", "{in}/scene.tif", "{out}/mine", "--labels", "{in}/good.gpkg", *VAE, "--overwrite"),
        names=("{out}/mine",),
        says="does not look like an export folder",
        old="mine/",
    ),
    Case(
        "export-output-folder-read-only",
        ("export", "{in}/scene.tif", "{out}/ro/x", "--labels", "{in}/good.gpkg", *VAE),
        names=("{out}/ro/x",),
        says=r"cannot write the export folder \(Permission denied\)",
        fault="readonly",
    ),
    Case(
        "export-disk-full",
        (*EXP, "--labels", "{in}/good.gpkg", "--overwrite"),
        names=("{out}/x",),
        says=r"cannot write .*File too large; is the disk full\?",
        old="x/",
        fault="fsize:20000",
    ),
    # ---------------------------------------------------------------- export-pairs
    Case(
        "pairs-two-images-one-chip-name",
        (*PAIRS, "--images", "{in}/p_dup/images", "--masks", "{in}/p_dup/masks", "--overwrite"),
        names=("{in}/p_dup/images/dup.jpg", "{in}/p_dup/images/dup.png"),
        says=r"would both be written as images/dup\.png",
        old="x/",
    ),
    Case(
        "pairs-names-differing-in-case",
        (*PAIRS, "--images", "{in}/p_case/images", "--masks", "{in}/p_case/masks"),
        names=("{in}/p_case/images/A.png", "{in}/p_case/images/a.png"),
        says="would both be written as",
    ),
    Case(
        "pairs-name-listed-twice",
        (
            *PAIRS,
            "--images",
            "{in}/p_ok/images",
            "--masks",
            "{in}/p_ok/masks",
            "--names",
            "{in}/names_twice.txt",
        ),
        names=("{in}/names_twice.txt",),
        says="a.png is listed more than once",
    ),
    Case(
        "pairs-corrupt-image",
        (*PAIRS, "--images", "{in}/p_corrupt/images", "--masks", "{in}/p_corrupt/masks"),
        names=("{in}/p_corrupt/images/b.png",),
        says="cannot read image",
    ),
    Case(
        "pairs-truncated-image",
        (*PAIRS, "--images", "{in}/p_trunc/images", "--masks", "{in}/p_trunc/masks"),
        names=("{in}/p_trunc/images/t.png",),
        says="truncated",
    ),
    Case(
        "pairs-decompression-bomb",
        (*PAIRS, "--images", "{in}/p_bomb/images", "--masks", "{in}/p_bomb/masks"),
        names=("{in}/p_bomb/images/big.png",),
        says=r"400 megapixels, over the 89-megapixel .* --allow-large-images",
    ),
    Case(
        "pairs-large-image-allowed-but-truncated",
        (*PAIRS, "--images", "{in}/p_bomb/images", "--masks", "{in}/p_bomb/masks", "--allow-large-images"),
        names=("{in}/p_bomb/masks/big.png",),
        says="cannot read mask image .*truncated",
    ),
    Case(
        "pairs-image-and-mask-sizes-differ",
        (*PAIRS, "--images", "{in}/p_size/images", "--masks", "{in}/p_size/masks"),
        names=("{in}/p_size/images/a.png",),
        says=r"image is 64x64 but its mask .*/p_size/masks/a\.png is 32x32",
    ),
    Case(
        "pairs-names-file-not-utf8",
        (*PAIRS, "--images", "{in}/p_ok/images", "--masks", "{in}/p_ok/masks", "--names", "{in}/latin1.txt"),
        names=("{in}/latin1.txt",),
        says="not UTF-8",
    ),
    Case(
        "pairs-disk-full",  # blamed on the output, not on the image being read
        (*PAIRS, "--images", "{in}/p_ok/images", "--masks", "{in}/p_ok/masks", "--overwrite"),
        names=("{out}/x",),
        says=r"cannot write images/a\.png \(File too large; is the disk full\?\)",
        old="x/",
        fault="fsize:2000",
    ),
    # ---------------------------------------------------------------- evaluate
    Case(
        "evaluate-prediction-corrupt",
        ("evaluate", "{in}/garbage.gpkg", "{in}/truth_decl.tif"),
        names=("{in}/garbage.gpkg",),
        says="cannot read prediction",
    ),
    Case(
        "evaluate-prediction-truncated-gpkg",
        ("evaluate", "{in}/trunc.gpkg", "{in}/truth_decl.tif"),
        names=("{in}/trunc.gpkg",),
        says="corrupt or truncated SQLite",
    ),
    Case(
        "evaluate-truth-corrupt",
        ("evaluate", "{in}/pred.gpkg", "{in}/garbage.gpkg", "--raster", "{in}/scene.tif"),
        names=("{in}/garbage.gpkg",),
        says="cannot read truth as vectors",
    ),
    Case(
        "evaluate-truth-nodata-minus-one",  # Sen1Floods11 labels: -1 is "no label", not land
        ("evaluate", "{in}/pred.gpkg", "{in}/truth_m1.tif", "--truth-nodata", "-1", "--json"),
        rc=0,
        says=r'"truth_nodata_pixels": 96000,',
    ),
    Case(
        "evaluate-truth-declared-nodata",
        ("evaluate", "{in}/pred.gpkg", "{in}/truth_decl.tif", "--json"),
        rc=0,
        says=r'"truth_nodata_pixels": 96000,',
    ),
    Case(
        "evaluate-truth-nodata-out-of-range",
        ("evaluate", "{in}/pred.gpkg", "{in}/truth_u8.tif", "--truth-nodata", "-1"),
        names=("{in}/truth_u8.tif",),
        says="cannot occur in this uint8 truth mask",
    ),
    Case(
        "evaluate-truth-elsewhere",
        ("evaluate", "{in}/pred.gpkg", "{in}/truth_far.tif"),
        names=("{in}/pred.gpkg", "{in}/truth_far.tif"),
        says="overlaps the reference grid",
    ),
    Case(
        "evaluate-truth-polygons-elsewhere",
        ("evaluate", "{in}/pred.gpkg", "{in}/far.gpkg", "--raster", "{in}/scene.tif"),
        names=("{in}/far.gpkg",),
        says="lie outside the reference grid",
    ),
    Case(
        "evaluate-truth-all-nodata",
        ("evaluate", "{in}/pred.gpkg", "{in}/truth_nodata.tif"),
        names=("{in}/pred.gpkg", "{in}/truth_nodata.tif"),
        says="no pixel has data in both",
    ),
    Case(
        "evaluate-truth-truncated",
        ("evaluate", "{in}/pred.gpkg", "{in}/trunc.tif"),
        names=("{in}/trunc.tif",),
        says="read failed in rows .*truth mask is truncated or corrupt",
    ),
    Case(
        "evaluate-reference-truncated",
        ("evaluate", "{in}/pred.gpkg", "{in}/good.gpkg", "--raster", "{in}/trunc.tif"),
        names=("{in}/trunc.tif",),
        says="read failed in rows .*reference raster is truncated or corrupt",
    ),
    Case(
        "evaluate-nodata-and-alpha-reference",  # NodataShadowWarning: a note, not a warning line
        ("evaluate", "{in}/pred.gpkg", "{in}/good.gpkg", "--raster", "{in}/alpha_nodata.tif"),
        rc=0,
        says="note: .*alpha_nodata.tif: has both a nodata value and an alpha band",
    ),
    Case(
        "evaluate-jsonl-bad-line",
        ("evaluate", "{in}/bad_line.jsonl", "{in}/p_ok/masks"),
        names=("{in}/bad_line.jsonl",),
        says="line 2 is not JSON",
    ),
    Case(
        "evaluate-jsonl-not-utf8",
        ("evaluate", "{in}/latin1.jsonl", "{in}/p_ok/masks"),
        names=("{in}/latin1.jsonl",),
        says="cannot read",
    ),
    Case(
        "evaluate-truth-mask-image-corrupt",
        ("evaluate", "{in}/ok.jsonl", "{in}/p_corrupt/images"),
        names=("{in}/p_corrupt/images/b.png",),
        says="cannot read mask image",
    ),
    # ---------------------------------------------------------------- finetune, weights
    Case(
        "finetune-corrupt-training-image",  # found before the model loads, not hours later
        ("finetune", "{in}/ft_corrupt", "{out}/model", "--model", "{in}/no_model"),
        names=("{in}/ft_corrupt/images/b.png",),
        says="cannot read training image",
    ),
    Case(
        "finetune-jsonl-missing-keys",
        ("finetune", "{in}/ft_keys", "{out}/model", "--model", "{in}/no_model"),
        names=("{in}/ft_keys/train.jsonl",),
        says=r"line 1 needs the key\(s\) image, prefix, suffix",
    ),
    Case(
        "weights-verify-truncated",
        ("weights", "verify", "{in}/vae_trunc.npz"),
        names=("{in}/vae_trunc.npz",),
        says=r"not a readable \.npz file",
    ),
    Case(
        "weights-verify-pickled-array",
        ("weights", "verify", "{in}/vae_pickle.npz", "--allow-custom-vae"),
        names=("{in}/vae_pickle.npz",),
        says="allow_pickle",
    ),
]


# --------------------------------------------------------------------------- inputs


def _png(width: int, height: int, mode: int = 2) -> bytes:
    """A PNG header claiming ``width x height`` with no pixel data (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _pair(folder: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    from PIL import Image

    for sub, arr in (("images", image), ("masks", mask)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / sub / name)


def _make_inputs(d: Path) -> None:
    import geopandas as gpd
    import rasterio
    from affine import Affine
    from rasterio.enums import ColorInterp
    from shapely.geometry import Point, Polygon, box
    from synthetic_rasters import make_scene
    from synthetic_vae import make_random_vae_npz

    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    rng = np.random.default_rng(0)
    scene = make_scene(d / "scene.tif", width=480, height=400, blocksize=128)
    make_scene(d / "small.tif", width=200, height=200)
    make_scene(d / "long.tif", width=1536, height=1536)
    data = (d / "scene.tif").read_bytes()
    (d / "trunc.tif").write_bytes(data[: len(data) // 4])  # the first tile row only
    with rasterio.open(d / "scene.tif") as src:
        profile, arr, crs, bounds, transform = src.profile, src.read(), src.crs, src.bounds, src.transform
    strip = dict(profile, tiled=False, compress=None, interleave="pixel")
    strip.pop("blockxsize"), strip.pop("blockysize")
    with rasterio.open(d / "strip.tif", "w", **strip) as dst:
        dst.write(arr)
    data = (d / "strip.tif").read_bytes()
    (d / "strip_trunc.tif").write_bytes(data[: int(len(data) * 0.6)])
    (d / "strip.tif").unlink()
    alpha = dict(profile, nodata=0)
    with rasterio.open(d / "alpha_nodata.tif", "w", **alpha) as dst:
        dst.write(arr)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    (d / "empty.tif").write_bytes(b"")
    (d / "text.tif").write_text("not a raster\n")
    huge = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">'
        f"{d / 'scene.tif'}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in range(1, 5)
    )
    (d / "huge.vrt").write_text(
        '<VRTDataset rasterXSize="1000000" rasterYSize="1000000"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>300000, 10, 0, 9000000, 0, -10</GeoTransform>{huge}</VRTDataset>"
    )
    (d / "scenes.txt").write_text("# two scenes\nscene.tif\nmissing_scene.tif\n")
    (d / "not_stac.json").write_text('{"type": "FeatureCollection", "features": []}')
    (d / "item.json").write_text(
        json.dumps(
            {
                "type": "Feature",
                "id": "T1",
                "properties": {"datetime": "2021-06-01T10:00:00Z"},
                "assets": {"red": {"href": "scene.tif", "eo:bands": [{"common_name": "red"}]}},
            }
        )
    )
    _pair(d / "p_plain", "plain.png", np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8))
    shutil.move(d / "p_plain" / "images" / "plain.png", d / "plain.png")
    shutil.rmtree(d / "p_plain")

    # truth masks on the scene grid: left half "no label" (-1), a square of water
    truth = np.zeros((scene.height, scene.width), np.int16)
    truth[:, : scene.width // 2] = -1
    truth[100:200, 300:400] = 1
    grid = dict(driver="GTiff", width=scene.width, height=scene.height, count=1, crs=crs, transform=transform)
    for name, kw, values in (
        ("truth_m1.tif", dict(dtype="int16"), truth),
        ("truth_decl.tif", dict(dtype="int16", nodata=-1), truth),
        ("truth_nodata.tif", dict(dtype="int16", nodata=-1), np.full_like(truth, -1)),
        ("truth_u8.tif", dict(dtype="uint8"), np.clip(truth, 0, 1).astype(np.uint8)),
        ("truth_far.tif", dict(dtype="int16", transform=Affine(10, 0, 0, 0, -10, 4000)), truth),
    ):
        with rasterio.open(d / name, "w", **{**grid, **kw}) as dst:
            dst.write(values, 1)

    # vectors
    x0, y0, x1, y1 = bounds
    water = box(x0 + 500, y0 + 500, x0 + 2000, y0 + 2000)
    bowtie = Polygon([(x0 + 100, y0 + 100), (x1 - 100, y1 - 100), (x1 - 100, y0 + 100), (x0 + 100, y1 - 100)])
    for name, geom in (
        ("good", water),
        ("bowtie", bowtie),
        ("far", box(0, 0, 10, 10)),
        ("points", Point(x0, y0)),
    ):
        gpd.GeoDataFrame({"label": ["water"]}, geometry=[geom], crs=crs).to_file(d / f"{name}.gpkg")
    gpd.GeoDataFrame({"label": ["water"]}, geometry=[water]).to_file(d / "metres.geojson")  # no CRS: lon/lat
    data = (d / "good.gpkg").read_bytes()
    (d / "trunc.gpkg").write_bytes(data[: len(data) // 3])
    (d / "garbage.gpkg").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    segment_raster(segment_spec(raster=str(d / "scene.tif"), output=str(d / "pred.gpkg"), preset="naip"))

    # codec weights
    make_random_vae_npz(d / "vae.npz", seed=0)
    data = (d / "vae.npz").read_bytes()
    (d / "vae_trunc.npz").write_bytes(data[: len(data) // 2])
    np.savez(d / "vae_pickle.npz", **{"encoder.0.weight": np.array([{"a": 1}], dtype=object)})

    # image/mask pairs
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:40] = 255
    for name in ("a.png", "b.png"):
        _pair(d / "p_ok", name, img, mask)
    for name in ("a.png", "dup.png", "dup.jpg"):
        _pair(d / "p_dup", name, img, mask)
    for name in ("A.png", "a.png"):
        _pair(d / "p_case", name, img, mask)
    for name in ("a.png", "b.png"):
        _pair(d / "p_corrupt", name, img, mask)
    (d / "p_corrupt" / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    _pair(d / "p_trunc", "t.png", img, mask)
    data = (d / "p_trunc" / "images" / "t.png").read_bytes()
    (d / "p_trunc" / "images" / "t.png").write_bytes(data[: len(data) // 2])
    for sub in ("images", "masks"):
        (d / "p_bomb" / sub).mkdir(parents=True)
        (d / "p_bomb" / sub / "big.png").write_bytes(_png(20000, 20000))
    _pair(d / "p_size", "a.png", img, mask[:32, :32])
    (d / "names_twice.txt").write_text("a.png\nb.png\na.png\n")
    (d / "latin1.txt").write_bytes("caf\xe9.png\n".encode("latin-1"))

    # JSONL and training folders
    (d / "ok.jsonl").write_text('{"image": "b.png", "model_output": ""}\n')
    (d / "bad_line.jsonl").write_text('{"image": "a.png", "model_output": ""}\n{"image": \n')
    (d / "latin1.jsonl").write_bytes(b'{"image": "caf\xe9.png", "model_output": ""}\n')
    from PIL import Image

    line = {"image": "a.png", "prefix": "segment water", "suffix": ""}
    for folder in ("ft_corrupt", "ft_keys"):
        (d / folder / "images").mkdir(parents=True)
        Image.fromarray(img).save(d / folder / "images" / "a.png")
    (d / "ft_corrupt" / "images" / "b.png").write_bytes(b"GIF89a" + rng.bytes(50))
    (d / "ft_corrupt" / "train.jsonl").write_text(
        json.dumps(line) + "\n" + json.dumps({**line, "image": "b.png"}) + "\n"
    )
    (d / "ft_keys" / "train.jsonl").write_text(json.dumps({"image": "a.png"}) + "\n")


@pytest.fixture(scope="module")
def root():
    """A world-readable folder (a read-only case runs as an unprivileged user when we are root)."""
    base = Path(tempfile.mkdtemp(prefix="paligemma_bad_inputs_"))
    base.chmod(0o755)
    (base / "in").mkdir(mode=0o755)
    sys.path.insert(0, str(REPO / "tests"))
    _make_inputs(base / "in")
    yield base
    for p in base.rglob("*"):  # read-only case folders
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(base)


# --------------------------------------------------------------------------- running


def _snapshot(folder: Path, *, content: bool = True) -> dict[str, object]:
    """Every file and folder under ``folder``: sha256 (or size and mtime) of files, None of folders."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir():
            out[rel + "/"] = None
        elif content:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            st = p.stat()
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def _messages(stderr: str) -> list[str]:
    """stderr lines that are not progress bars."""
    lines = stderr.replace("\r", "\n").split("\n")
    return [ln.strip() for ln in lines if ln.strip() and not _BAR.match(ln)]


def _demote() -> None:  # pragma: no cover - runs in the child
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def _run(case: Case, argv: list[str], env: dict[str, str], out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "paligemma_qgis", *argv]
    kw: dict = dict(cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if case.fault.startswith("fsize:"):
        import resource

        limit = int(case.fault.split(":")[1])

        def limit_file_size() -> None:  # pragma: no cover - runs in the child
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        kw["preexec_fn"] = limit_file_size
    if case.fault == "readonly" and os.geteuid() == 0:  # root writes anywhere: run as nobody
        out.chmod(0o777)
        Path(env["TMPDIR"]).chmod(0o777)
        kw["preexec_fn"] = _demote
    if case.fault in ("sigint", "sigterm"):
        proc = subprocess.Popen(cmd, **kw)
        seen = ""
        while "segmenting chips" not in seen and proc.poll() is None:
            seen += proc.stderr.read(1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT if case.fault == "sigint" else signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, seen + stderr)
    return subprocess.run(cmd, timeout=300, **kw)


def _make_old(out: Path, old: str) -> None:
    if old == "mine/":  # a user's folder, not an export of ours
        (out / "mine").mkdir()
        (out / "mine" / "notes.txt").write_bytes(OLD_BYTES)
    elif old.endswith("/"):  # an earlier export folder (it has our markers, so --overwrite may replace it)
        folder = out / old.rstrip("/")
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "keep.png").write_bytes(OLD_BYTES)
        (folder / "train.jsonl").write_bytes(OLD_BYTES)
    else:
        (out / old).write_bytes(OLD_BYTES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, root: Path) -> None:
    inputs = root / "in"
    out = root / case.id
    tmp = out / "tmp"
    tmp.mkdir(parents=True)
    if case.old:
        _make_old(out, case.old)
    if case.fault == "readonly":
        (out / "ro").mkdir()
        (out / "ro").chmod(0o555)
    fill = {"in": str(inputs), "out": str(out)}
    argv = [a.format(**fill) for a in case.args]
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PALIGEMMA_QGIS_VAE", None)
    inputs_before = _snapshot(inputs, content=False)
    out_before = _snapshot(out)
    try:
        proc = _run(case, argv, env, out)
    except PermissionError:  # pragma: no cover - no unprivileged user to run as
        pytest.skip("cannot run as an unprivileged user here")
    finally:
        if (out / "ro").exists():
            (out / "ro").chmod(0o755)

    context = f"\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == case.rc, context
    assert "Traceback" not in proc.stderr, context
    messages = _messages(proc.stderr)
    if case.rc == 0:
        assert messages == [] if not case.warns else len(messages) == 1, context
        if case.warns:
            assert re.search(case.warns, messages[0]), context
        assert re.search(case.says, proc.stdout), context
    else:
        assert len(messages) == 1, f"expected one line on stderr{context}"
        (line,) = messages
        assert line.startswith("error: ") or case.rc == 130, context
        assert re.search(case.says, line), context
        for name in case.names:
            assert name.format(**fill) in line, f"the message does not name {name.format(**fill)}{context}"

    # nothing left behind, nothing lost
    assert list(tmp.iterdir()) == [], f"left in $TMPDIR: {sorted(p.name for p in tmp.iterdir())}"
    after = _snapshot(out)
    added = {k: v for k, v in after.items() if k not in out_before}
    assert {k: v for k, v in after.items() if k in out_before} == out_before, "an existing output changed"
    assert not [k for k in out_before if k not in after], "an existing output was removed"
    unexpected = [k for k in added if not any(k == n or k.startswith(n + "/") for n in case.new)]
    assert unexpected == [], f"left behind in the output folder: {unexpected}"
    for n in case.new:
        assert n in added or n + "/" in added, f"{n} was not written{context}"
    assert _snapshot(inputs, content=False) == inputs_before, "an input changed"


def test_the_table_has_forty_cases_of_its_own() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
