"""MaskCodec against an independent plain-numpy port of big_vision's Flax/TF code.

The reference below works in NHWC with Flax/TF kernel layouts (HWIO, converted from the
npz exactly like big_vision's ``_get_params``/``_conv_tf``) and implements 'SAME' and
``lax.conv_transpose(..., transpose_kernel=True)`` from their definitions, not from torch.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
from synthetic_vae import make_random_vae_npz, random_vae_arrays, write_vae_npz

from paligemma_qgis.core.errors import WeightsError
from paligemma_qgis.core.model.codec import MaskCodec
from paligemma_qgis.core.model.weights import VAE_SHA256, VAE_SHAPES

# --------------------------------------------------------------- numpy reference


def _hwio(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0)).astype(np.float64)  # big_vision's transp()


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding) -> np.ndarray:
    """tf.nn.conv2d / flax nn.Conv: NHWC input, kernel (kh, kw, in, out)."""
    kh, kw = w.shape[:2]
    if padding == "SAME":
        (pt, pb), (pl, pr) = _same_pads(x.shape[1], kh, stride), _same_pads(x.shape[2], kw, stride)
    else:
        pt = pb = pl = pr = padding
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
            out += np.einsum("nhwc,co->nhwo", patch, w[i, j])
    return out + b


def ref_conv_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """flax nn.ConvTranspose(padding=pad, transpose_kernel=True), kernel (kh, kw, features, in).

    lax.conv_transpose: dilate the input by the stride, pad it by ``pad`` each side, and run
    a stride-1 VALID conv with the kernel flipped in space and its two channel axes swapped.
    """
    n, h, wd, c = x.shape
    dil = np.zeros((n, (h - 1) * stride + 1, (wd - 1) * stride + 1, c))
    dil[:, ::stride, ::stride, :] = x
    kernel = w[::-1, ::-1].transpose(0, 1, 3, 2)  # -> (kh, kw, in, features)
    return ref_conv(dil, kernel, b, 1, pad)


def ref_resblock(x, a, name):
    y = np.maximum(ref_conv(x, _hwio(a[f"{name}.0.weight"]), a[f"{name}.0.bias"], 1, "SAME"), 0)
    y = np.maximum(ref_conv(y, _hwio(a[f"{name}.2.weight"]), a[f"{name}.2.bias"], 1, "SAME"), 0)
    return x + ref_conv(y, _hwio(a[f"{name}.4.weight"]), a[f"{name}.4.bias"], 1, "SAME")


def ref_decode(a: dict, codes: np.ndarray) -> np.ndarray:
    emb = a["_vq_vae._embedding"].astype(np.float64)
    x = emb[codes.reshape(-1)].reshape(codes.shape[0], 4, 4, emb.shape[1])
    x = np.maximum(ref_conv(x, _hwio(a["decoder.0.weight"]), a["decoder.0.bias"], 1, 0), 0)
    x = ref_resblock(x, a, "decoder.2.net")
    x = ref_resblock(x, a, "decoder.3.net")
    for name in ("decoder.4", "decoder.6", "decoder.8", "decoder.10"):
        x = np.maximum(ref_conv_transpose(x, _hwio(a[f"{name}.weight"]), a[f"{name}.bias"], 2, 2), 0)
    x = ref_conv(x, _hwio(a["decoder.12.weight"]), a["decoder.12.bias"], 1, 0)
    return x[..., 0]


def ref_latents(a: dict, masks: np.ndarray) -> np.ndarray:
    x = 2.0 * (masks[..., None].astype(np.float64) - 0.5)
    for n in range(4):
        name = f"encoder.{2 * n}"
        x = np.maximum(ref_conv(x, _hwio(a[f"{name}.weight"]), a[f"{name}.bias"], 2, "SAME"), 0)
    x = ref_resblock(x, a, "encoder.8.net")
    x = ref_resblock(x, a, "encoder.9.net")
    return ref_conv(x, _hwio(a["encoder.10.weight"]), a["encoder.10.bias"], 1, "SAME")


def ref_distances(a: dict, latents: np.ndarray) -> np.ndarray:
    emb = a["_vq_vae._embedding"].astype(np.float64)
    flat = latents.reshape(-1, emb.shape[1])
    return (flat**2).sum(1)[:, None] + (emb**2).sum(1)[None] - 2 * flat @ emb.T


# --------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def arrays():
    return random_vae_arrays(seed=0)  # what the vae_npz fixture holds


@pytest.fixture(scope="module")
def codec(vae_npz):
    return MaskCodec.from_npz(vae_npz, device="cpu", allow_custom_vae=True)


def _blob_masks(n: int, seed: int = 1) -> np.ndarray:
    """Soft ellipses and rectangles in [0,1], like resized instance crops."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    masks = np.zeros((n, 64, 64), np.float32)
    for i in range(n):
        cy, cx, ry, rx = rng.uniform(10, 54), rng.uniform(10, 54), rng.uniform(5, 30), rng.uniform(5, 30)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        masks[i] = np.clip(1.5 - d, 0, 1)
    return masks


# --------------------------------------------------------------- tests


def test_reference_self_checks():
    # the numpy reference itself: SAME on even sizes pads 1/1 for k4 s2, 0/1 for k2 s2
    assert _same_pads(64, 4, 2) == (1, 1)
    assert _same_pads(8, 4, 2) == (1, 1)
    assert _same_pads(64, 3, 1) == (1, 1)
    assert _same_pads(64, 1, 1) == (0, 0)
    # a transposed conv is the adjoint of the matching forward conv: <T x, y> == <x, C y>
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 4, 3, 5))  # (kh, kw, features=3, in=5)
    x = rng.standard_normal((1, 6, 6, 5))
    y = rng.standard_normal((1, 12, 12, 3))
    tx = ref_conv_transpose(x, w, np.zeros(3), 2, 2)
    assert tx.shape == (1, 12, 12, 3)
    cy = ref_conv(y, w, np.zeros(5), 2, "SAME")  # forward conv 3 -> 5 channels, pads 1/1
    assert np.isclose((tx * y).sum(), (x * cy).sum())


def test_decode_matches_reference(codec, arrays):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 128, size=(6, 16))
    got = codec.decode(codes)
    want = ref_decode(arrays, codes)
    assert got.shape == (6, 64, 64) and got.dtype == np.float32
    assert np.abs(want).max() > 0.1 and (want > 0).any() and (want < 0).any()  # non-trivial weights
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_encode_matches_reference(codec, arrays):
    masks = _blob_masks(6)
    masks[0] = 0.0
    masks[1] = 1.0
    lat = ref_latents(arrays, masks)
    np.testing.assert_allclose(codec.encode_latents(masks), lat, atol=1e-4, rtol=1e-4)
    codes = codec.encode(masks)
    assert codes.shape == (6, 16) and codes.dtype == np.int64
    dist = ref_distances(arrays, lat)
    want = dist.argmin(1).reshape(6, 16)
    order = np.sort(dist, axis=1)
    clear = (order[:, 1] - order[:, 0] > 1e-3).reshape(6, 16)
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(codes[clear], want[clear])
    chosen = np.take_along_axis(dist, codes.reshape(-1, 1), 1)[:, 0]
    assert np.all(chosen <= order[:, 0] + 1e-3)  # near-ties: still a nearest row
    assert len(np.unique(codes)) > 4  # the random codebook is actually used


def test_quantiser_picks_nearest_row(arrays, tmp_path):
    # encoder.10 outputs its bias only: every token must be that codebook row
    a = dict(arrays)
    a["encoder.10.weight"] = np.zeros_like(a["encoder.10.weight"])
    a["encoder.10.bias"] = a["_vq_vae._embedding"][37] + 0.01
    codec = MaskCodec(a, device="cpu")
    assert (codec.encode(_blob_masks(3)) == 37).all()


def _symmetric(arrays: dict, axis: int) -> dict:
    """Make every spatial kernel mirror-symmetric along kh (axis=2) or kw (axis=3)."""
    out = dict(arrays)
    for name, arr in arrays.items():
        if arr.ndim == 4:
            out[name] = ((arr + np.flip(arr, axis=axis)) / 2).astype(np.float32)
    return out


@pytest.mark.parametrize("axis", [2, 3])
def test_token_order_is_row_major(arrays, axis):
    # With mirror-symmetric kernels the network commutes with a flip, so mirroring the 4x4
    # code grid must mirror the mask. Reading tokens column-major would fail this.
    codec = MaskCodec(_symmetric(arrays, axis), device="cpu")
    spatial = axis - 1  # kh -> image rows (axis 1 of (N,64,64)), kw -> columns
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 128, size=(4, 16))
    mirrored = np.flip(codes.reshape(4, 4, 4), axis=spatial).reshape(4, 16)
    out = codec.decode(codes)
    assert not np.allclose(out, np.flip(out, axis=spatial), atol=1e-3)  # the test can fail
    np.testing.assert_allclose(codec.decode(mirrored), np.flip(out, axis=spatial), atol=1e-4)
    # and the encoder: a mirrored mask gives the mirrored code grid
    masks = _blob_masks(4, seed=2)
    enc = codec.encode(masks)
    enc_m = codec.encode(np.ascontiguousarray(np.flip(masks, axis=spatial)))
    np.testing.assert_array_equal(enc_m, np.flip(enc.reshape(4, 4, 4), axis=spatial).reshape(4, 16))


def test_single_token_change_is_local(codec):
    # one changed token moves the mask most inside its own 16x16 block, at (k // 4, k % 4)
    base = np.full((1, 16), 5)
    ref = codec.decode(base)[0]
    for k in (0, 3, 6, 12, 15):
        codes = base.copy()
        codes[0, k] = 90
        diff = np.abs(codec.decode(codes)[0] - ref).reshape(4, 16, 4, 16).sum(axis=(1, 3))
        assert np.unravel_index(diff.argmax(), diff.shape) == (k // 4, k % 4)


def test_batches_and_chunks_agree(vae_npz):
    big = MaskCodec.from_npz(vae_npz, device="cpu", allow_custom_vae=True)
    small = MaskCodec.from_npz(vae_npz, device="cpu", allow_custom_vae=True, batch_size=3)
    codes = np.random.default_rng(0).integers(0, 128, size=(10, 16))
    full = big.decode(codes)
    np.testing.assert_allclose(small.decode(codes), full, atol=1e-5)
    for i in (0, 4, 9):
        np.testing.assert_allclose(big.decode(codes[i : i + 1])[0], full[i], atol=1e-5)
    masks = _blob_masks(10)
    np.testing.assert_array_equal(small.encode(masks), big.encode(masks))
    np.testing.assert_array_equal(big.encode(masks[2:3])[0], big.encode(masks)[2])


def test_empty_batches(codec):
    assert codec.decode(np.zeros((0, 16), np.int64)).shape == (0, 64, 64)
    assert codec.decode(np.array([], np.int64)).shape == (0, 64, 64)  # from an empty object list
    assert codec.encode(np.zeros((0, 64, 64), np.float32)).shape == (0, 16)
    assert codec.encode(np.zeros((0, 64, 64), np.float32)).dtype == np.int64


def test_encode_decode_sanity(codec):
    codes = np.random.default_rng(4).integers(0, 128, size=(8, 16))
    dec = codec.decode(codes)
    soft = np.clip((dec + 1) / 2, 0, 1)
    a, b = codec.encode(soft), codec.encode(soft.astype(np.float64))
    assert a.shape == (8, 16) and a.min() >= 0 and a.max() < 128
    np.testing.assert_array_equal(a, b)  # float64 input is accepted and cast
    assert codec.device.type == "cpu"


def test_bad_inputs_raise(codec):
    with pytest.raises(ValueError, match="shape"):
        codec.decode(np.zeros((2, 15), np.int64))
    with pytest.raises(ValueError, match="0..127"):
        codec.decode(np.full((1, 16), 128))
    with pytest.raises(ValueError, match="integers"):
        codec.decode(np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match="shape"):
        codec.encode(np.zeros((1, 32, 32)))


# --------------------------------------------------------------- weight files


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="nothere.npz"):
        MaskCodec.from_npz(tmp_path / "nothere.npz")


def test_truncated_file(vae_npz, tmp_path):
    bad = tmp_path / "vae-oid.npz"
    bad.write_bytes(vae_npz.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="not a readable .npz") as err:
        MaskCodec.from_npz(bad, allow_custom_vae=True)
    assert str(bad) in str(err.value)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="notes.npz"):
        MaskCodec.from_npz(text, allow_custom_vae=True)


def test_missing_array(arrays, tmp_path):
    a = dict(arrays)
    del a["decoder.8.bias"]
    path = write_vae_npz(tmp_path / "short.npz", a)
    with pytest.raises(WeightsError, match=r"short\.npz.*decoder\.8\.bias"):
        MaskCodec.from_npz(path, allow_custom_vae=True)


def test_wrong_shape(arrays, tmp_path):
    a = dict(arrays)
    a["decoder.6.weight"] = np.zeros((64, 128, 4, 4), np.float32)  # torch Conv2d layout by mistake
    path = write_vae_npz(tmp_path / "shape.npz", a)
    with pytest.raises(WeightsError, match=r"shape\.npz: array decoder\.6\.weight has shape \(64, 128"):
        MaskCodec.from_npz(path, allow_custom_vae=True)


def test_checksum_refused_unless_allowed(vae_npz):
    with pytest.raises(WeightsError) as err:
        MaskCodec.from_npz(vae_npz)
    msg = str(err.value)
    assert VAE_SHA256 in msg and "set allow_custom_vae" in msg and "--allow" not in msg
    assert str(vae_npz) in msg
    assert MaskCodec.from_npz(vae_npz, allow_custom_vae=True).path == vae_npz


def test_synthetic_file_layout(vae_npz, tmp_path):
    with zipfile.ZipFile(vae_npz) as z:
        assert len(z.namelist()) == 49 == len(VAE_SHAPES)
    other = make_random_vae_npz(tmp_path / "b.npz", seed=1)
    with np.load(vae_npz) as a, np.load(other) as b:
        assert all(a[k].shape == VAE_SHAPES[k] and a[k].dtype == np.float32 for k in VAE_SHAPES)
        assert not np.array_equal(a["decoder.0.weight"], b["decoder.0.weight"])
