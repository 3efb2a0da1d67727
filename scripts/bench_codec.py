"""Mask codec throughput (masks/s) for decode and encode at several batch sizes.

    .venv/bin/python scripts/bench_codec.py [--vae vae-oid.npz] [--threads 2] [--seconds 2]

Without --vae it uses seeded random weights of the real layout (same arithmetic, same
speed). Goal: decode >= 200 masks/s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from paligemma_qgis.core.model.codec import MaskCodec  # noqa: E402


def _rate(fn, n: int, seconds: float, sync) -> tuple[float, float]:
    """(median, best) masks/s over repeated calls; best is the least disturbed by other load."""
    fn()  # warm-up (allocations, kernels)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return n / float(np.median(times)), n / min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", help="real vae-oid.npz (default: random weights of its layout)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--batches", default="1,64,512")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.vae:
        path, custom = Path(args.vae), False
    else:
        from synthetic_vae import make_random_vae_npz

        tmp = tempfile.mkdtemp(prefix="bench_codec_")
        atexit.register(shutil.rmtree, tmp, True)
        path, custom = make_random_vae_npz(Path(tmp) / "vae-oid.npz"), True

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, weights: {path}")
    print("masks/s as median / best over repeated calls")
    print(f"{'device':<8}{'batch':>7}{'decode':>18}{'encode':>18}")
    for device in devices:
        codec = MaskCodec.from_npz(path, device=device, allow_custom_vae=custom)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for n in (int(b) for b in args.batches.split(",")):
            codes = rng.integers(0, 128, size=(n, 16))
            masks = rng.random((n, 64, 64), dtype=np.float32)
            dec = _rate(functools.partial(codec.decode, codes), n, args.seconds, sync)
            enc = _rate(functools.partial(codec.encode, masks), n, args.seconds, sync)
            cells = "".join(f"{f'{m:.0f} / {b:.0f}':>18}" for m, b in (dec, enc))
            print(f"{device:<8}{n:>7}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
