"""Which batch size should PaliGemma use on a CPU? The whole pipeline at each size, measured.

Builds the tiny random PaliGemma (scripts/make_tiny_paligemma.py) and a random VAE, and a
synthetic 4-band scene (tests/synthetic_rasters.py), then runs ``segment_raster`` with
``--engine paligemma --device cpu`` at every --batch-sizes, each in a fresh process, taking
turns for --rounds rounds, and prints the medians: whole run, chip loop, chips/s and peak
RSS. Every size must give the same chips layer text (greedy decoding): the script checks.

The tiny model measures what batching saves around the model (Python per call, the
codec, reading ahead); a full-size model on a CPU spends far longer per chip in its
matrix products, and its per-chip memory (``chip_memory_bytes``, printed for the real
PaliGemma 2 3B config) bounds how large a default may be.

    python scripts/bench_cpu_batch.py --batch-sizes 1,2,4,8,16 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))


def run_once(raster: str, model: str, vae: str, out: str, batch: int, threads: int, queue) -> None:
    import pyogrio
    import torch

    torch.set_num_threads(threads)
    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    opts = segment_spec(
        raster=raster,
        output=out,
        engine="paligemma",
        model=model,
        vae=vae,
        allow_custom_vae=True,
        device="cpu",
        batch_size=batch,
        overwrite=True,
        restart=True,
    )
    t0 = time.perf_counter()
    s = segment_raster(opts)
    wall = time.perf_counter() - t0
    chips = pyogrio.read_dataframe(out, layer="chips", read_geometry=False)
    texts = hashlib.sha256("\n".join(chips["text"].fillna("")).encode()).hexdigest()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(dict(wall=wall, chip_s=s.details["chip_seconds"], chips=s.chips, rss=rss, texts=texts))


def real_model_chip_mb() -> float:
    """Per-chip memory of PaliGemma 2 3B (float32 on a CPU), as the engine estimates it."""
    from types import SimpleNamespace

    from bench_gpu import PALIGEMMA2_3B_224

    from paligemma_qgis.core.model.paligemma import chip_memory_bytes

    cfg = PALIGEMMA2_3B_224
    config = SimpleNamespace(
        text_config=SimpleNamespace(**{"vocab_size": cfg["vocab_size"], **cfg["text_config"]}),
        vision_config=SimpleNamespace(**cfg["vision_config"]),
    )
    return chip_memory_bytes(config, 256 + 8, 8 * 23 + 2, 4) / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="1,2,4,8,16")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=1500, help="scene side in pixels (default 1500: 64 chips)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args()
    import make_tiny_paligemma as mk
    from synthetic_rasters import make_scene
    from synthetic_vae import make_random_vae_npz

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = mk.build_tiny_paligemma(tmp / "tiny", seed=0)
        vae = make_random_vae_npz(tmp / "vae-oid.npz", seed=0)
        scene = make_scene(tmp / "scene.tif", width=args.size, height=args.size)
        ctx = mp.get_context("spawn")
        rows: dict[int, list[dict]] = {b: [] for b in sizes}
        for k in range(args.rounds):
            for b in sizes:
                queue = ctx.Queue()
                proc = ctx.Process(
                    target=run_once,
                    args=(
                        str(scene.path),
                        str(model),
                        str(vae),
                        str(tmp / f"o{b}.gpkg"),
                        b,
                        args.threads,
                        queue,
                    ),
                )
                proc.start()
                rows[b].append(queue.get())
                proc.join()
                r = rows[b][-1]
                print(
                    f"round {k + 1} batch {b:3d}: run {r['wall']:.2f} s, chip loop {r['chip_s']:.2f} s, "
                    f"{r['chips'] / r['wall']:.1f} chips/s, {r['rss']:.0f} MB",
                    flush=True,
                )
        same = len({r["texts"] for rs in rows.values() for r in rs}) == 1
        print(
            f"\nmedians over {args.rounds} rounds, {rows[sizes[0]][0]['chips']} chips, {args.threads} torch threads"
        )
        print("| batch | whole run | chip loop | chips/s | vs batch 4 | peak RSS |")
        print("|---:|---:|---:|---:|---:|---:|")
        ref = statistics.median(r["wall"] for r in rows[4]) if 4 in rows else None
        for b in sizes:
            wall = statistics.median(r["wall"] for r in rows[b])
            chip = statistics.median(r["chip_s"] for r in rows[b])
            rss = statistics.median(r["rss"] for r in rows[b])
            vs = f"{ref / wall:.2f}x" if ref else "-"
            print(
                f"| {b} | {wall:.2f} s | {chip:.2f} s | {rows[b][0]['chips'] / wall:.1f} | {vs} | {rss:.0f} MB |"
            )
        print(f"\nsame chip texts at every batch size: {'yes' if same else 'NO'}")
        print(f"PaliGemma 2 3B on a CPU (float32): about {real_model_chip_mb():.0f} MB per chip in a batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
