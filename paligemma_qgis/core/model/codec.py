"""The VQ-VAE mask codec behind PaliGemma's 16 ``<seg>`` tokens (vae-oid.npz), in torch.

A faithful port of big_vision (``pp/proj/paligemma/segmentation.py`` for the encoder,
``evaluators/proj/paligemma/transfers/segmentation.py`` for the decoder):

decoder  codes (N,16) -> codebook rows -> (N,4,4,512) row-major -> conv1x1 512->128, ReLU
         -> 2 x ResBlock -> 4 x [ConvTranspose k4 s2, ReLU] 128->128->64->32->16 -> conv1x1 16->1
encoder  mask (N,64,64) in [0,1] -> 2(m-0.5) -> 4 x [conv k4 s2 SAME, ReLU] 1->16->32->64->128
         -> 2 x ResBlock -> conv1x1 128->512 -> nearest codebook row (squared L2) -> (N,16)

Padding equivalences (checked against a plain numpy Flax/TF reference in the tests):
- TF/Flax 'SAME' for k4 s2 on an even size n: total pad (n/2-1)*2+4-n = 2, split 1 before and
  1 after, i.e. torch Conv2d(k4, s2, padding=1).
- Flax ConvTranspose(k4, s2, padding=2, transpose_kernel=True) pads the stride-dilated input
  by 2 = k-1-p on each side, i.e. torch ConvTranspose2d(k4, s2, padding=1), with the npz
  (in, out, kh, kw) kernel used as is.

torch is imported here only; modules that just parse tokens stay light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from .weights import load_vae_arrays

NUM_CODES = 128
TOKENS = 16
MASK_SIZE = 64
_DECODER_UP = ("decoder.4", "decoder.6", "decoder.8", "decoder.10")
_ENCODER_DOWN = ("encoder.0", "encoder.2", "encoder.4", "encoder.6")


def _resblock(x: torch.Tensor, w: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    y = F.relu(F.conv2d(x, w[f"{name}.0.weight"], w[f"{name}.0.bias"], padding=1))
    y = F.relu(F.conv2d(y, w[f"{name}.2.weight"], w[f"{name}.2.bias"], padding=1))
    return x + F.conv2d(y, w[f"{name}.4.weight"], w[f"{name}.4.bias"])


class MaskCodec:
    """Encode 64x64 masks to 16 codes and decode codes back; numpy in, numpy out.

    Build it with ``MaskCodec.from_npz``. Inputs are processed in chunks of ``batch_size``
    masks (default 64 on CPU, 1024 on CUDA), which bounds memory for any N.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        path: Path | None = None,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if batch_size is None:  # small chunks stay in CPU caches; a GPU wants big ones
            batch_size = 64 if self.device.type == "cpu" else 1024
        self.batch_size = max(1, int(batch_size))
        self.path = path
        self._w = {
            k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(self.device)
            for k, v in arrays.items()
        }
        emb = self._w["_vq_vae._embedding"]
        self._emb_sq = (emb**2).sum(dim=1)

    @classmethod
    def from_npz(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        allow_custom_vae: bool = False,
        batch_size: int | None = None,
    ) -> MaskCodec:
        """Load vae-oid.npz (validated; a file that is not Google's is refused unless allowed)."""
        path = Path(path)
        arrays = load_vae_arrays(path, allow_custom_vae=allow_custom_vae)
        return cls(arrays, device=device, batch_size=batch_size, path=path)

    # ----------------------------------------------------------------- decoder
    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        w = self._w
        n = codes.shape[0]
        x = w["_vq_vae._embedding"][codes.reshape(-1)]  # (n*16, 512), row-major 4x4
        x = x.reshape(n, 4, 4, -1).permute(0, 3, 1, 2).contiguous()
        x = F.relu(F.conv2d(x, w["decoder.0.weight"], w["decoder.0.bias"]))
        x = _resblock(x, w, "decoder.2.net")
        x = _resblock(x, w, "decoder.3.net")
        # channels-last makes torch's CPU transposed convs 2-3x faster (scripts/bench_codec.py)
        x = x.contiguous(memory_format=torch.channels_last)
        for name in _DECODER_UP:
            x = F.relu_(F.conv_transpose2d(x, w[f"{name}.weight"], w[f"{name}.bias"], stride=2, padding=1))
        x = F.conv2d(x, w["decoder.12.weight"], w["decoder.12.bias"])
        return x[:, 0]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes int (N,16) in 0..127 -> float32 (N,64,64), roughly [-1,1], water > 0."""
        arr = np.asarray(codes)
        if arr.size == 0:  # also np.array([]) from an empty list of objects
            return np.zeros((0, MASK_SIZE, MASK_SIZE), np.float32)
        if arr.ndim != 2 or arr.shape[1] != TOKENS:
            raise ValueError(f"codes must have shape (N, {TOKENS}), got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= NUM_CODES):
            raise ValueError(f"codes must lie in 0..{NUM_CODES - 1}, got {arr.min()}..{arr.max()}")
        out = np.empty((arr.shape[0], MASK_SIZE, MASK_SIZE), np.float32)
        with torch.inference_mode():
            for start in range(0, arr.shape[0], self.batch_size):
                chunk = torch.from_numpy(arr[start : start + self.batch_size].astype(np.int64))
                out[start : start + len(chunk)] = self._decode(chunk.to(self.device)).cpu().numpy()
        return out

    # ----------------------------------------------------------------- encoder
    def _latents(self, masks: torch.Tensor) -> torch.Tensor:
        """Encoder output before quantisation, NHWC (n,4,4,512)."""
        w = self._w
        x = 2.0 * (masks[:, None] - 0.5)
        for name in _ENCODER_DOWN:
            x = F.relu(F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], stride=2, padding=1))
        x = _resblock(x, w, "encoder.8.net")
        x = _resblock(x, w, "encoder.9.net")
        x = F.conv2d(x, w["encoder.10.weight"], w["encoder.10.bias"])
        return x.permute(0, 2, 3, 1)

    def _quantise(self, latents: torch.Tensor) -> torch.Tensor:
        flat = latents.reshape(-1, latents.shape[-1])
        emb = self._w["_vq_vae._embedding"]
        # same expansion as big_vision: |x|^2 + |e|^2 - 2 x.e
        dist = (flat**2).sum(dim=1, keepdim=True) + self._emb_sq[None, :] - 2.0 * flat @ emb.T
        return dist.argmin(dim=1).reshape(-1, TOKENS)

    def _check_masks(self, masks: np.ndarray) -> np.ndarray:
        arr = np.asarray(masks)
        if arr.ndim != 3 or arr.shape[1:] != (MASK_SIZE, MASK_SIZE):
            raise ValueError(f"masks must have shape (N, {MASK_SIZE}, {MASK_SIZE}), got {arr.shape}")
        return arr.astype(np.float32, copy=False)

    def encode_latents(self, masks: np.ndarray) -> np.ndarray:
        """Encoder features before the codebook lookup, float32 (N,4,4,512) (for checks)."""
        arr = self._check_masks(masks)
        out = np.empty((arr.shape[0], 4, 4, 512), np.float32)
        with torch.inference_mode():
            for start in range(0, arr.shape[0], self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(arr[start : start + self.batch_size]))
                out[start : start + len(chunk)] = self._latents(chunk.to(self.device)).cpu().numpy()
        return out

    def encode(self, masks: np.ndarray) -> np.ndarray:
        """Masks float (N,64,64) in [0,1] (soft values welcome) -> int64 codes (N,16), row-major."""
        arr = self._check_masks(masks)
        out = np.empty((arr.shape[0], TOKENS), np.int64)
        with torch.inference_mode():
            for start in range(0, arr.shape[0], self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(arr[start : start + self.batch_size]))
                codes = self._quantise(self._latents(chunk.to(self.device)))
                out[start : start + len(chunk)] = codes.cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"MaskCodec(path={str(self.path)!r}, device={str(self.device)!r})"
