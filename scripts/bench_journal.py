"""What the journal's safety costs: JSON + WKB records against pickle, keyed checks, and opening.

    python scripts/bench_journal.py [--scenes 600] [--polygons 300] [--chips 400]

Prints: one scene record's size and encode/decode time (and pickle's, for comparison), the
MAC of a record, and the time to open a journal of --scenes finished scenes (every record's
check included) and to read every record back, as the output's assembly does. No pass/fail.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _result(polygons: int, chips: int):
    import geopandas as gpd
    import shapely
    from rasterio.windows import Window

    from paligemma_qgis.core.inputs.scenes import Scene
    from paligemma_qgis.core.run.results import SceneResult

    rings = [shapely.Point(i * 50.0, (i % 17) * 40.0).buffer(15.0, quad_segs=8) for i in range(polygons)]
    water = gpd.GeoDataFrame(
        {"area_m2": [g.area for g in rings], "perimeter_m": [g.length for g in rings]},
        geometry=rings,
        crs="EPSG:32633",
    )
    records = [
        {
            "chip_id": i,
            "window": Window(i * 200, 0, 224, 224),
            "status": "ok",
            "text": "<loc0001>" * 4,
            "n_objects": 1,
        }
        for i in range(chips)
    ]
    return SceneResult(
        scene=Scene("scene_20200831", "/data/scene_20200831.tif", "/data/scene_20200831.tif", "2020-08-31"),
        status="done",
        date="2020-08-31",
        crs_wkt=water.crs.to_wkt(),
        transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0),
        water=water,
        observed=shapely.box(0, 0, 20000, 20000),
        footprint=shapely.box(0, 0, 20000, 20000),
        records=records,
        chips=chips,
        engine={"index": "ndwi", "bands": [2, 4], "threshold": 0.1},
    )


def _timed(fn, rounds: int = 20) -> float:
    t0 = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - t0) / rounds


def _legacy_pickle(result) -> bytes:
    """What the journal stored before: the same plain values, pickled."""
    import shapely

    d = dict(vars(result))
    d["scene"] = vars(result.scene)
    d["water"] = {
        "wkb": list(shapely.to_wkb(result.water.geometry.values)),
        "columns": {c: result.water[c].tolist() for c in result.water.columns if c != "geometry"},
    }
    d["observed"], d["footprint"] = shapely.to_wkb(result.observed), shapely.to_wkb(result.footprint)
    d["records"] = [{**r, "window": tuple(map(int, r["window"].flatten()))} for r in result.records]
    return pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)


def _legacy_load(blob: bytes):
    """What reading a record cost before: unpickle, then the same objects rebuilt."""
    import geopandas as gpd
    import shapely
    from rasterio.windows import Window

    from paligemma_qgis.core.inputs.scenes import Scene
    from paligemma_qgis.core.run.results import SceneResult

    d = pickle.loads(blob)  # noqa: S301 - our own bytes, for the comparison
    d["scene"] = Scene(**d["scene"])
    w = d["water"]
    d["water"] = gpd.GeoDataFrame(
        w["columns"], geometry=gpd.GeoSeries(shapely.from_wkb(w["wkb"]), crs=d["crs_wkt"])
    )
    d["observed"], d["footprint"] = shapely.from_wkb(d["observed"]), shapely.from_wkb(d["footprint"])
    d["records"] = [{**r, "window": Window(*r["window"])} for r in d["records"]]
    return SceneResult(**d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=600)
    parser.add_argument("--polygons", type=int, default=300)
    parser.add_argument("--chips", type=int, default=400)
    args = parser.parse_args()
    os.environ.setdefault("PALIGEMMA_QGIS_STATE_DIR", tempfile.mkdtemp(prefix="bench_journal_key_"))
    from paligemma_qgis.core.run.journal import Journal
    from paligemma_qgis.core.run.journal_seal import Seal
    from paligemma_qgis.core.run.results import SceneResult

    result = _result(args.polygons, args.chips)
    blob = result.to_bytes()
    old = _legacy_pickle(result)
    print(f"one scene ({args.polygons} polygons, {args.chips} chips): record {len(blob) / 1e3:.0f} kB "
          f"(pickle {len(old) / 1e3:.0f} kB)")  # fmt: skip
    print(f"  encode {_timed(result.to_bytes) * 1e3:.2f} ms, decode {_timed(lambda: SceneResult.from_bytes(blob)) * 1e3:.2f} ms"
          f" (pickle: encode {_timed(lambda: _legacy_pickle(result)) * 1e3:.2f} ms, "
          f"decode {_timed(lambda: _legacy_load(old)) * 1e3:.2f} ms)")  # fmt: skip
    seal = Seal(Seal.new_nonce())
    print(f"  keyed check (blake2b) {_timed(lambda: seal.mac('scene', 's', 'done', blob), 200) * 1e6:.0f} us")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "water.gpkg"
        fingerprint = ("0123456789abcdef", {"scenes": [["s", "/data/s.tif"]]})
        with Journal.open(out, fingerprint) as journal:
            t0 = time.perf_counter()
            for i in range(args.scenes):
                journal.scene_done(f"scene_{i:05d}", blob)
            written = time.perf_counter() - t0
        t0 = time.perf_counter()
        with Journal.open(out, fingerprint) as journal:
            opened = time.perf_counter() - t0
            t0 = time.perf_counter()
            n = sum(1 for _ in journal.results(journal.finished()))
            read = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    print(f"{args.scenes} scenes: journaled in {written:.2f} s ({size / 1e6:.0f} MB), reopened with every "
          f"record checked in {opened:.2f} s, {n} records read back and checked in {read:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
