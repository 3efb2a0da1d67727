"""Segmentation text: real model output, exact big_vision suffixes, and a seeded fuzz."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from paligemma_qgis.core.model.tokens import SegObject, format_objects, parse_segmentation, parse_summary


def _loc(v: int) -> str:
    return f"<loc{v:04d}>"


def _seg(v: int) -> str:
    return f"<seg{v:03d}>"


def _obj(box=(10, 20, 300, 400), codes=tuple(range(16)), label="water") -> str:
    return "".join(map(_loc, box)) + "".join(map(_seg, codes or ())) + " " + label


@pytest.fixture(scope="module")
def finetuned(shared_data):
    path = shared_data / "paligemma_reference" / "model_outputs_finetuned.jsonl"
    return {d["image"]: d["model_output"] for d in map(json.loads, path.read_text().splitlines())}


@pytest.mark.shared_data
def test_real_finetuned_outputs(finetuned):
    assert len(finetuned) == 21
    assert parse_segmentation(finetuned["water_body_7551.jpg"]) == []
    assert parse_summary(parse_segmentation(finetuned["water_body_7551.jpg"])) == "empty"
    ok = parse_segmentation(finetuned["water_body_51.jpg"])
    assert ok == [
        SegObject(
            (0, 0, 1023, 1022),
            (76, 119, 23, 78, 114, 22, 23, 78, 9, 22, 29, 64, 54, 54, 119, 0),
            "water",
        )
    ]
    for name in ("water_body_8661.jpg", "water_body_8896.jpg"):  # 17 <seg> tokens
        (obj,) = parse_segmentation(finetuned[name])
        assert not obj.accepted and obj.status == "17 seg tokens" and len(obj.codes) == 17
        assert parse_summary([obj]) == "0 ok, 1 rejected: 17 seg tokens"
    summaries = [parse_summary(parse_segmentation(t)) for t in finetuned.values()]
    assert summaries.count("empty") == 14
    assert summaries.count("1 object ok") == 5
    assert summaries.count("0 ok, 1 rejected: 17 seg tokens") == 2


@pytest.mark.shared_data
def test_big_vision_suffix_round_trip(shared_data):
    line = (shared_data / "paligemma_reference" / "train_vae_example.jsonl").read_text().splitlines()[0]
    suffix = json.loads(line)["suffix"]
    objs = parse_segmentation(suffix)
    assert len(objs) == 4 and all(o.accepted for o in objs)
    assert objs[0].box == (555, 936, 674, 990) and objs[0].codes[:3] == (78, 74, 73)
    assert format_objects(objs) == suffix
    assert parse_summary(objs) == "4 objects ok"


@pytest.mark.parametrize(
    ("text", "statuses"),
    [
        ("", []),
        ("   \n ", []),
        ("<eos>", []),
        (_obj(), ["ok"]),
        ("  " + _obj() + " <eos><pad><pad>", ["ok"]),
        ("segment water\n" + _obj(), ["ok"]),  # prompt echo
        ("<image><image><bos>segment water\n" + _obj() + "<eos>", ["ok"]),
        (_obj(label="water body"), ["ok"]),
        (_obj(codes=None), ["ok"]),  # detection
        (_obj() + " ; " + _obj(codes=range(17)), ["ok", "17 seg tokens"]),
        (_obj(codes=range(3)), ["3 seg tokens"]),
        (_obj()[:-8], ["truncated"]),  # cut inside the seg tokens
        (_obj() + " ; ", ["ok", "truncated"]),
        (_obj() + " ; <loc0001><loc0002>", ["ok", "truncated"]),
        (_obj(box=(300, 20, 300, 400)), ["bad box: y2 <= y1"]),
        (_obj(box=(10, 500, 300, 400)), ["bad box: x2 <= x1"]),
        (_obj().replace("<loc0300>", "<loc1024>"), ["out-of-range <loc1024>"]),
        (_obj().replace("<seg005>", "<seg128>"), ["out-of-range <seg128>"]),
        (_obj().replace("<seg005>", "<seg05>"), ["malformed token <seg05>"]),
        (_obj() + " ; hello there ; " + _obj(), ["ok", "garbage 'hello there'", "ok"]),
        ("some words " + _obj(), ["garbage before box 'some words'"]),
        (_obj() + "<unused7>", ["stray token '<unused7>'"]),
        (_obj() + _obj(label="river"), ["ok", "ok"]),  # separator missing
        (_obj(codes=range(3)).replace(" water", "") + _obj(), ["3 seg tokens", "ok"]),
        (_obj().replace(" water", "") + " ; " + _obj(), ["no label", "ok"]),
        (_obj() + " ;  ; " + _obj(), ["ok", "empty object", "ok"]),
        ("<loc0001><loc0002><loc0003><loc0004><loc0005>" + _obj(), ["9 loc tokens"]),
        ("<loc" + "9" * 5000 + ">" + _obj(), ["malformed token <loc999999999999"]),
    ],
)
def test_cases(text, statuses):
    objs = parse_segmentation(text)
    assert [o.status for o in objs] == statuses


def test_labels_and_summary():
    objs = parse_segmentation(_obj(label="  water   body ") + " ; " + _obj(label="river"))
    assert [o.label for o in objs] == ["water body", "river"]
    assert parse_summary(objs) == "2 objects ok"
    bad = parse_segmentation(_obj() + " ; " + _obj(codes=range(17)) + " ; " + _obj(codes=range(17)))
    assert parse_summary(bad) == "1 ok, 2 rejected: 17 seg tokens (x2)"
    assert parse_segmentation(None) == []  # type: ignore[arg-type]


def test_format_big_vision_layout():
    objs = [SegObject((1, 2, 3, 4), tuple(range(16)), "water"), SegObject((5, 6, 7, 8), None, "river")]
    assert format_objects(objs) == _obj((1, 2, 3, 4)) + " ; " + "<loc0005><loc0006><loc0007><loc0008> river"
    assert format_objects([]) == ""
    for bad in (
        SegObject((1, 2, 3, 1024), None, "water"),
        SegObject((1, 2, 3, 4), (1,) * 17, "water"),
        SegObject((1, 2, 3, 4), (128,) * 16, "water"),
        SegObject((1, 2, 3, 4), None, "a;b"),
        SegObject((1, 2, 3, 4), None, " "),
    ):
        with pytest.raises(ValueError):
            format_objects([bad])


def test_tokens_module_stays_light():
    code = (
        "import sys, paligemma_qgis.core.model.tokens; print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    code = (
        "import sys, paligemma_qgis.core.model.masks, paligemma_qgis.core.model.weights, paligemma_qgis.cli.weights;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


# ------------------------------------------------------------------ fuzz

_LABELS = ["water", "water body", "river", "lake ; x", "a<b", "", " ", "水"]
_JUNK = [
    "<eos>",
    "<pad>",
    "<bos>",
    "<image>",
    "<unused0>",
    "<",
    ">",
    ";",
    " ; ",
    "\n",
    "  ",
    "<loc>",
    "<seg>",
    "<loc99999>",
    "<seg1>",
    "<locabcd>",
    "segment water\n",
    "x",
    "<<loc0001>",
    "<seg005",
    "\t",
    "<loc-001>",
]


def _random_object(rng: random.Random) -> str:
    box = [rng.randrange(0, 1024) for _ in range(4)]
    if rng.random() < 0.7:  # mostly valid boxes
        box[0], box[2] = sorted(rng.sample(range(1024), 2))
        box[1], box[3] = sorted(rng.sample(range(1024), 2))
    nseg = rng.choice([16] * 6 + [0, 1, 3, 15, 17])
    codes = [rng.randrange(0, 128) for _ in range(nseg)]
    label = rng.choice(_LABELS[:3]) if rng.random() < 0.9 else rng.choice(_LABELS)
    return "".join(map(_loc, box)) + "".join(map(_seg, codes)) + " " + label


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randrange(1, 4)):
        op = rng.random()
        pos = rng.randrange(0, len(text) + 1)
        if op < 0.3:
            text = text[:pos]  # truncation
        elif op < 0.6:
            text = (
                text[:pos]
                + rng.choice(_JUNK + [_loc(rng.randrange(1100)), _seg(rng.randrange(140))])
                + text[pos:]
            )
        elif op < 0.8:
            end = min(len(text), pos + rng.randrange(1, 12))
            text = text[:pos] + text[end:]  # deletion
        else:
            text = (
                text[:pos]
                + "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 6)))
                + text[pos:]
            )
    return text


def _random_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:  # valid outputs
        return " ; ".join(_random_object(rng) for _ in range(rng.randrange(0, 5)))
    if kind < 0.75:  # mutated outputs
        return _mutate(" ; ".join(_random_object(rng) for _ in range(rng.randrange(1, 4))), rng)
    if kind < 0.9:  # random token soup
        pool = _JUNK + [_loc(rng.randrange(1024)), _seg(rng.randrange(128)), " water", " ; "]
        return "".join(rng.choice(pool) for _ in range(rng.randrange(0, 40)))
    return "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(0, 60)))  # garbage


def test_fuzz_parser_total_and_consistent():
    rng = random.Random(20240603)
    n_ok = n_rejected = 0
    for _ in range(12_000):
        text = _random_text(rng)
        objs = parse_segmentation(text)  # must never raise
        assert isinstance(objs, list)
        summary = parse_summary(objs)
        assert isinstance(summary, str) and summary
        accepted = [o for o in objs if o.accepted]
        for o in objs:
            assert isinstance(o.status, str) and o.status
            if not o.accepted:
                n_rejected += 1
                continue
            n_ok += 1
            y1, x1, y2, x2 = o.box
            assert all(0 <= v <= 1023 for v in o.box) and y2 > y1 and x2 > x1
            assert o.codes is None or (len(o.codes) == 16 and all(0 <= c <= 127 for c in o.codes))
            assert o.label and o.label == o.label.strip() and not any(c in o.label for c in ";<>")
        once = format_objects(accepted)  # accepted objects are always writable
        again = parse_segmentation(once)
        assert again == accepted
        assert format_objects(again) == once
    assert n_ok > 4_000 and n_rejected > 4_000, (n_ok, n_rejected)  # the fuzz reaches both sides
