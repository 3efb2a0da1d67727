"""Benchmark region runs: scenes per minute (local vs Ray), resume after a kill, model loads, driver RSS.

Every run is the real command line in a fresh process (`python -m paligemma_qgis segment ...`),
timed from start to exit, on synthetic scenes built once in --workdir:

1. throughput: N scenes with the water index, and a few with the tiny random PaliGemma, run
   sequentially (--executor local) and on a local Ray (--executor ray: it starts with every
   core of the machine as workers; on 2 cores that is "Ray with 2 workers");
2. resume: the same command killed (SIGKILL) when the journal holds half of the work, then run
   again: the second run's time as a share of an uninterrupted run (goal <= 55 %);
3. model loads per run: a counting factory, in-process, local and Ray (goal: one per worker);
4. the driver's peak RSS for 10 and 100 small scenes (goal: flat in the number of scenes).

    python scripts/bench_many.py                 # about 7 minutes on 2 cores (1 GB of scenes)
    python scripts/bench_many.py --quick         # fewer scenes, for a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def scenes(folder: Path, n: int, size: int) -> list[Path]:
    from synthetic_rasters import make_scene

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"scene{i:03d}_2021{1 + i % 12:02d}{1 + i % 28:02d}.tif"
        if not path.exists():
            make_scene(path, width=size, height=size, seed=i)
        out.append(path)
    return out


def _peak_rss_mb(pid: int, done: threading.Event, peak: list[float]) -> None:
    """The process's own high-water mark (VmHWM), polled: ru_maxrss of a forked child also
    counts the parent's pages it held until exec, which would charge this script's memory."""
    while not done.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        time.sleep(0.02)


def run(args: list[str], *, kill_when: tuple[Path, str, int] | None = None) -> dict:
    """Run the CLI; wall seconds, its peak RSS (MB), and its JSON summary."""
    cmd = [sys.executable, "-m", "paligemma_qgis", "segment", *args, "--json"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)
        done, peak = threading.Event(), [0.0]
        watcher = threading.Thread(target=_peak_rss_mb, args=(proc.pid, done, peak), daemon=True)
        watcher.start()
        killed_at = None
        if kill_when is not None:
            journal, query, at_least = kill_when
            while proc.poll() is None:
                try:
                    with contextlib.closing(
                        sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
                    ) as db:
                        if db.execute(query).fetchone()[0] >= at_least:
                            proc.kill()
                            killed_at = time.perf_counter() - t0
                            break
                except sqlite3.Error:
                    pass
                time.sleep(0.02)
        out, _ = proc.communicate()
        wall = time.perf_counter() - t0
        done.set()
        watcher.join()
        err.seek(0)
        if killed_at is None and proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read()[-3000:]}")
    result = {"wall": wall, "rss_mb": peak[0], "killed_at": killed_at}
    if killed_at is None:
        result["summary"] = json.loads(out.strip().splitlines()[-1])
    return result


def tiny_model(work: Path) -> list[str]:
    import importlib.util

    from synthetic_vae import make_random_vae_npz

    model, vae = work / "tiny_model", work / "vae-oid.npz"
    if not vae.exists():
        make_random_vae_npz(vae, seed=0)
    if not model.exists():
        spec = importlib.util.spec_from_file_location("tiny", REPO / "scripts" / "make_tiny_paligemma.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build_tiny_paligemma(model, seed=0)
    return [
        "--engine", "paligemma", "--model", str(model), "--vae", str(vae), "--allow-custom-vae",
        "--device", "cpu", "--batch-size", "4", "--max-objects", "2",
    ]  # fmt: skip


def throughput(label: str, inputs: list[Path], flags: list[str], work: Path) -> None:
    rates = {}
    for executor in ("local", "ray"):
        out = work / f"through_{executor}.gpkg"
        r = run([*map(str, inputs), str(out), *flags, "--executor", executor, "--overwrite"])
        s = r["summary"]
        rates[executor] = len(inputs) / r["wall"] * 60
        print(
            f"  {label}, {executor:5s}: {len(inputs)} scenes, {s['chips']} chips in {r['wall']:.1f} s wall "
            f"({s['seconds']:.1f} s in the run) = {rates[executor]:.1f} scenes/min; driver peak RSS {r['rss_mb']:.0f} MB"
        )
    print(f"  {label}: Ray / local = {rates['ray'] / rates['local']:.2f}")


def resume(label: str, inputs: list[Path], flags: list[str], work: Path, query: str, half: int) -> None:
    full = run([*map(str, inputs), str(work / "full.gpkg"), *flags, "--overwrite"])
    out = work / "killed.gpkg"
    for p in (out, Path(f"{out}.journal")):
        p.unlink(missing_ok=True)
    killed = run([*map(str, inputs), str(out), *flags], kill_when=(Path(f"{out}.journal"), query, half))
    again = run([*map(str, inputs), str(out), *flags])
    d = again["summary"]["details"]
    share = again["wall"] / full["wall"]
    loop = d["chip_seconds"] / full["summary"]["details"]["chip_seconds"]
    print(
        f"  {label}: full run {full['wall']:.1f} s; killed at {killed['killed_at']:.1f} s; the same command again "
        f"{again['wall']:.1f} s = {share:.0%} of a full run (goal <= 55 %), its chip loop {loop:.0%} of a full "
        f"run's; from the journal: {d['scenes_from_journal']} scenes, {d['chips_from_journal']} chips"
    )


def model_loads(inputs: list[Path], flags: list[str], work: Path) -> None:
    """Counts real model loads with a factory that notes each one in a file (Ray workers too)."""
    import ray

    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    model, vae = flags[flags.index("--model") + 1], flags[flags.index("--vae") + 1]
    for executor, actors in (("local", None), ("ray", 2)):
        log = work / f"loads_{executor}.txt"
        log.unlink(missing_ok=True)
        if executor == "ray":
            ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)  # 2 actors + a CPU for tasks
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        opts = segment_spec(
            raster=[str(p) for p in inputs],
            output=str(work / f"loads_{executor}.gpkg"),
            overwrite=True,
            engine="paligemma",
            vae=vae,  # Ray's finishing tasks decode the texts with it
            allow_custom_vae=True,
            executor=executor,
            ray_actors=actors,
            batch_size=4,
            max_objects=2,
        )
        summary = segment_raster(opts, segmenter=CountingFactory(model, vae, str(log)))
        if executor == "ray":
            ray.shutdown()
        loads = len(log.read_text().splitlines())
        print(
            f"  {executor:5s}: {summary.scenes} scenes, {summary.chips} chips, "
            f"{actors or 1} worker(s): {loads} model load(s) (goal: one per worker)"
        )


class CountingFactory:
    def __init__(self, model: str, vae: str, log: str):
        self.model, self.vae, self.log = model, vae, log

    def __call__(self, roles=None):
        from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return PaliGemmaSegmenter.from_options(
            model=self.model, vae=self.vae, allow_custom_vae=True, device="cpu", batch_size=4, max_objects=2
        )


def driver_rss(work: Path, counts: list[int]) -> None:
    for n in counts:
        inputs = scenes(work / "rss", n, 256)
        listing = work / f"rss_{n}.txt"
        listing.write_text("\n".join(map(str, inputs[:n])))
        r = run([str(listing), str(work / f"rss_{n}.gpkg"), "--nir", "4", "--overwrite"])
        print(f"  {n:4d} scenes (256 px): peak RSS {r['rss_mb']:.0f} MB, {r['wall']:.1f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "paligemma_bench_many"))
    p.add_argument("--quick", action="store_true", help="fewer and smaller scenes")
    args = p.parse_args()
    work = Path(args.workdir)
    n_index, n_model, rss = (6, 2, [10, 30]) if args.quick else (24, 4, [10, 100])
    index_scenes = scenes(work / "index", n_index, 1000)
    model_scenes = scenes(work / "model", n_model, 500)
    index_flags = ["--nir", "4"]
    model_flags = tiny_model(work)
    print(f"machine: {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.2f}")
    print("1. throughput (wall time of the whole command, Python and Ray start-up included)")
    throughput("water index, 1000 px scenes", index_scenes, index_flags, work)
    throughput("tiny PaliGemma, 500 px scenes", model_scenes, model_flags, work)
    print("2. resume after kill -9 at half the work")
    n_big = 6 if args.quick else 24
    big_index = scenes(work / "index2000", n_big, 2000)
    resume(
        f"water index, {n_big} scenes of 2000 px",
        big_index,
        index_flags,
        work,
        "SELECT count(*) FROM scenes",
        n_big // 2,
    )
    if not args.quick:  # the same at 4x the work a scene: start-up's share shrinks, the share nears 50 %
        resume(
            "water index, 16 scenes of 4000 px",
            scenes(work / "index4000", 16, 4000),
            index_flags,
            work,
            "SELECT count(*) FROM scenes",
            8,
        )
    # The tiny model answers a chip in ~20 ms, so a run is mostly start-up (Python, torch, the model:
    # ~3.5 s); free decoding up to 8 objects (~180 tokens a chip) and a 676-chip scene make the model
    # work dominate, as it does for the real model on a real region.
    side, chips = (900, 20) if args.quick else (5000, 676)
    big = scenes(work / f"big{side}", 1, side)
    label = f"tiny PaliGemma (free decoding, 8 objects), one {side} px scene ({chips} chips)"
    slow = [*model_flags, "--no-constrained", "--max-objects", "8"]
    resume(label, big, slow, work, "SELECT count(*) FROM chips", chips // 2)
    print("3. model loads per run")
    model_loads(model_scenes, model_flags, work)
    print("4. driver peak RSS by number of scenes (water index)")
    driver_rss(work, rss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
