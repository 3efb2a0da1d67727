"""Mask <-> box helpers: big_vision's box arithmetic and resizes, pasting, instance crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

from paligemma_qgis.core.model.codec import MaskCodec
from paligemma_qgis.core.model.masks import (
    codes_array,
    decode_objects,
    encode_instances,
    instance_to_object,
    loc_box_to_pixels,
    paste_mask,
    paste_masks,
    pixel_box_to_loc,
    usable_objects,
)
from paligemma_qgis.core.model.tokens import SegObject, format_objects, parse_segmentation


@pytest.fixture(scope="module")
def codec(vae_npz):
    return MaskCodec.from_npz(vae_npz, device="cpu", allow_custom_vae=True)


def test_loc_box_to_pixels_big_vision_arithmetic():
    # big_vision: bb = tokens / 1023; int(y1 * h) ...
    assert loc_box_to_pixels((0, 0, 1023, 1023), 224, 224) == (0, 0, 224, 224)
    assert loc_box_to_pixels((555, 936, 674, 990), 224, 224) == (121, 204, 147, 216)
    assert loc_box_to_pixels((512, 512, 1023, 1023), 448, 896) == (224, 448, 448, 896)
    for h, w in [(224, 224), (448, 448), (896, 896), (300, 500)]:
        for loc in range(0, 1024, 7):
            want = int(np.float64(loc) / 1023 * h)
            assert loc_box_to_pixels((loc, 0, 1023, 1023), h, w)[0] == want


@pytest.mark.parametrize("size", [224, 448, 896, 97])
def test_pixel_loc_round_trip(size):
    # every pixel edge survives pixel -> loc -> pixel for chips up to 1024 px
    for edge in range(size + 1):
        loc = pixel_box_to_loc(edge, 0, size, size, size, size)[0]
        assert 0 <= loc <= 1023
        px = loc_box_to_pixels((loc, 0, 1023, 1023), size, size)[0]
        assert abs(px - edge) <= 1
    assert pixel_box_to_loc(0, 0, size, size, size, size) == (0, 0, 1023, 1023)
    assert pixel_box_to_loc(-5, 0, size + 9, size, size, size) == (0, 0, 1023, 1023)  # clipped


def test_pixel_box_to_loc_rounds():
    assert pixel_box_to_loc(10, 20, 110, 220, 224, 448) == (46, 46, 502, 502)
    assert pixel_box_to_loc(1, 1, 2, 2, 2, 2) == (512, 512, 1023, 1023)  # round(511.5) -> 512


def test_paste_mask_matches_big_vision_resize():
    rng = np.random.default_rng(0)
    dec = rng.uniform(-1, 1, (64, 64)).astype(np.float32)
    box = (100, 200, 700, 900)
    out = paste_mask(box, dec, 224, 224)
    y1, x1, y2, x2 = loc_box_to_pixels(box, 224, 224)
    want = np.asarray(Image.fromarray(dec).resize([x2 - x1, y2 - y1], resample=Image.BILINEAR)) > 0
    assert out.dtype == bool and out.shape == (224, 224)
    np.testing.assert_array_equal(out[y1:y2, x1:x2], want)
    assert not out[:y1].any() and not out[y2:].any() and not out[:, :x1].any() and not out[:, x2:].any()


@pytest.mark.parametrize("shape", [(224, 224), (448, 448), (896, 896), (200, 350)])
def test_paste_full_box_positive_mask(shape):
    h, w = shape
    full = np.ones((64, 64), np.float32)
    assert paste_mask((0, 0, 1023, 1023), full, h, w).all()
    half = np.where(np.arange(64)[None, :] < 32, 1.0, -1.0).repeat(64, 0).astype(np.float32)
    out = paste_mask((0, 0, 1023, 1023), half, h, w)
    assert abs(out.mean() - 0.5) < 0.02 and out[:, : w // 3].all() and not out[:, -w // 3 :].any()


def test_tiny_box_is_skipped():
    assert not paste_mask((10, 10, 11, 11), np.ones((64, 64), np.float32), 224, 224).any()


def _objs():
    return [
        SegObject((0, 0, 512, 512), tuple([1] * 16), "water"),
        SegObject((0, 0, 0, 0), (1, 2, 3), "water", "3 seg tokens"),
        SegObject((512, 512, 1023, 1023), None, "water"),  # detection only
        SegObject((512, 0, 1023, 512), tuple([2] * 16), "water"),
    ]


def test_paste_masks_alignment():
    objs = _objs()
    pos = np.ones((64, 64), np.float32)
    neg = -pos
    per_object = np.stack([pos, pos, pos, neg])
    out = paste_masks(objs, per_object, 100, 100)
    assert out[:50, :50].all() and not out[50:].any() and not out[:, 50:].any()
    per_usable = np.stack([neg, pos])
    out2 = paste_masks(objs, per_usable, 100, 100)
    assert out2[50:, :50].all() and not out2[:50].any()
    assert not paste_masks([], np.zeros((0, 64, 64)), 10, 20).any()
    with pytest.raises(ValueError, match="3 decoded masks for 4 objects"):
        paste_masks(objs, np.zeros((3, 64, 64)), 10, 10)
    assert [o.box for o in usable_objects(objs)] == [(0, 0, 512, 512), (512, 0, 1023, 512)]
    assert codes_array(objs).shape == (2, 16) and codes_array([]).shape == (0, 16)


def test_instance_to_object_box_and_crop():
    mask = np.zeros((224, 224), bool)
    mask[20:60, 100:180] = True  # rows 20..59, cols 100..179
    box, crop = instance_to_object(mask)
    assert box == pixel_box_to_loc(20, 100, 60, 180, 224, 224)
    assert crop.shape == (64, 64) and crop.dtype == np.float32
    np.testing.assert_allclose(crop, 1.0)  # a full rectangle fills its own box
    with pytest.raises(ValueError, match="empty"):
        instance_to_object(np.zeros((5, 5), bool))


@pytest.mark.parametrize("crop_shape", [(200, 150), (40, 20), (64, 64), (7, 300)])
def test_instance_crop_is_antialiased_bilinear(crop_shape):
    # PIL BILINEAR == torch antialiased bilinear (half-pixel centres), the TF resize recipe
    rng = np.random.default_rng(1)
    h, w = crop_shape
    mask = np.zeros((h + 4, w + 6), bool)
    inner = rng.random((h, w)) > 0.4
    inner[0, :] = inner[-1, :] = inner[:, 0] = inner[:, -1] = True  # tight box is the crop
    mask[2 : 2 + h, 3 : 3 + w] = inner
    _, crop = instance_to_object(mask)
    t = torch.from_numpy(inner.astype(np.float32))[None, None]
    want = F.interpolate(t, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    np.testing.assert_allclose(crop, want.numpy(), atol=1e-4)
    assert crop.min() >= 0.0 and crop.max() <= 1.0
    if crop_shape != (64, 64):
        assert ((crop > 0) & (crop < 1)).any()  # soft values, not thresholded


def test_encode_instances_and_decode_objects(codec):
    m1 = np.zeros((224, 224), bool)
    m1[10:50, 20:120] = True
    m2 = np.zeros((224, 224), bool)
    m2[100:200, 150:220] = True
    objs = encode_instances(codec, [m1, m2], label="water body")
    assert len(objs) == 2 and all(o.accepted and o.label == "water body" for o in objs)
    assert objs[0].box == pixel_box_to_loc(10, 20, 50, 120, 224, 224)
    crops = np.stack([instance_to_object(m)[1] for m in (m1, m2)])
    assert [o.codes for o in objs] == [tuple(r) for r in codec.encode(crops).tolist()]
    text = format_objects(objs)
    assert parse_segmentation(text) == objs
    water = decode_objects(codec, parse_segmentation(text), 224, 224)
    want = paste_masks(objs, codec.decode(codes_array(objs)), 224, 224)
    np.testing.assert_array_equal(water, want)
    # nothing outside the two boxes (as the loc grid gives them back)
    outside = np.ones((224, 224), bool)
    for o in objs:
        y1, x1, y2, x2 = loc_box_to_pixels(o.box, 224, 224)
        outside[y1:y2, x1:x2] = False
    assert not water[outside].any()
    assert encode_instances(codec, []) == []
    assert not decode_objects(codec, [], 50, 60).any()
    with pytest.raises(ValueError, match="instance 1"):
        encode_instances(codec, [m1, np.zeros((5, 5), bool)])
