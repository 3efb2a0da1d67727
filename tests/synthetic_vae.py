"""Seeded random weights in the exact vae-oid.npz layout (the real file is never needed).

The scale keeps activations of order one through every layer, so decoded masks have both
signs and the encoder spreads over the codebook: tests then exercise real arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paligemma_qgis.core.model.weights import VAE_SHAPES

_TRANSPOSED = {"decoder.4.weight", "decoder.6.weight", "decoder.8.weight", "decoder.10.weight"}


def random_vae_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for name, shape in VAE_SHAPES.items():
        if name.startswith("_vq_vae"):
            arr = rng.standard_normal(shape)
            if name.endswith("cluster_size"):
                arr = np.abs(arr) * 100
        elif name.endswith(".bias"):
            arr = 0.05 * rng.standard_normal(shape)
        else:
            if name in _TRANSPOSED:  # (in, out, kh, kw); stride 2: ~in*4 taps per output
                fan_in = shape[0] * shape[2] * shape[3] / 4
            else:  # (out, in, kh, kw)
                fan_in = shape[1] * shape[2] * shape[3]
            arr = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            if name.endswith(".4.weight"):  # last conv of a residual block: keep the sum tame
                arr *= 0.5
        arrays[name] = arr.astype(np.float32)
    return arrays


def write_vae_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def make_random_vae_npz(path: str | Path, seed: int = 0) -> Path:
    """Write a vae-oid-layout npz of seeded random weights (all 49 arrays) and return its path."""
    return write_vae_npz(path, random_vae_arrays(seed))
