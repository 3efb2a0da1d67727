"""PaliGemma engine on CPU with a tiny random model: loading, grammar, segmenter, errors.

The model is random, so its free text is noise: that is what shows that the constrained
decoder (not luck) makes every output parse.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from paligemma_qgis.core.errors import WeightsError  # noqa: E402
from paligemma_qgis.core.model.constrained import SEG_PER_OBJECT, SegmentationGrammar, build_prompt  # noqa: E402
from paligemma_qgis.core.model.hf_models import (  # noqa: E402
    describe_device,
    load_paligemma,
    resolve_model_folder,
    select_device,
    select_dtype,
)
from paligemma_qgis.core.model.segmenter import ChipBatch, ChipResult, RasterBands  # noqa: E402
from paligemma_qgis.core.model.tokens import parse_segmentation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECRET = "hf_dontLeakThisToken1234567890"


@pytest.fixture(scope="module")
def loaded(tiny_paligemma):
    return load_paligemma(str(tiny_paligemma), device="cpu", offline=True)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(7)
    imgs = rng.integers(0, 256, (24, 224, 224, 3), dtype=np.uint8)
    imgs[::3] //= 4  # some dark, some flat chips, to vary what the model sees
    imgs[1::6] = 128
    return imgs


def _generate(loaded, imgs, texts, *, constrained, classes=("water",), max_objects=3, sample=False, seed=0):
    """Generated ids (suffix only) and decoded texts for one batch, the way the segmenter runs it."""
    from transformers import LogitsProcessorList

    grammar = SegmentationGrammar(loaded.processor.tokenizer, classes)
    budget = grammar.max_new_tokens(max_objects)
    enc = loaded.processor(images=list(imgs), text=texts, return_tensors="pt", padding="longest")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")}
    prompt_len = inputs["input_ids"].shape[1]
    kwargs = {"max_new_tokens": budget, "do_sample": sample}
    if constrained:
        # prompt_length left to the processor: it must find the prompt end itself
        kwargs["logits_processor"] = LogitsProcessorList([grammar.processor(max_new_tokens=budget)])
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, **kwargs)
    gen = out[:, prompt_len:]
    texts_out = loaded.processor.tokenizer.batch_decode(gen, skip_special_tokens=True)
    return gen, texts_out, grammar


def _object_token_runs(ids: list[int], grammar: SegmentationGrammar) -> list[tuple[int, int]]:
    """(loc count, seg count) per object, counted on token ids (objects start at a loc run)."""
    locs, segs = set(grammar.loc_ids), set(grammar.seg_ids)
    runs: list[list[int]] = []
    prev_kind = None
    for tok in ids:
        if tok == grammar.eos_id:
            break
        kind = "loc" if tok in locs else "seg" if tok in segs else "text"
        if kind == "loc" and prev_kind != "loc":
            runs.append([0, 0])
        if runs and kind == "loc":
            runs[-1][0] += 1
        elif runs and kind == "seg":
            runs[-1][1] += 1
        prev_kind = kind
    return [tuple(r) for r in runs]


# --------------------------------------------------------------------------- model + processor


def test_tiny_model_loads_through_user_loader(loaded, tiny_paligemma):
    assert type(loaded.model).__name__ == "PaliGemmaForConditionalGeneration"
    assert type(loaded.processor).__name__ == "PaliGemmaProcessor"
    assert loaded.image_size == 224
    assert loaded.folder == Path(tiny_paligemma)
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    assert not loaded.model.training
    assert loaded.describe().endswith("float32") and "cpu (" in loaded.describe()
    assert sum(p.stat().st_size for p in Path(tiny_paligemma).iterdir()) < 20e6


def test_processor_makes_256_image_tokens_and_gemma_layout(loaded):
    proc = loaded.processor
    tok = proc.tokenizer
    enc = proc(
        images=[np.zeros((224, 224, 3), np.uint8), np.zeros((90, 300, 3), np.uint8)],
        text=["<image>segment water", "<image>segment water ; river"],
        return_tensors="pt",
        padding="longest",
    )
    assert enc["pixel_values"].shape == (2, 3, 224, 224)  # the odd chip is resized
    image_id = tok.convert_tokens_to_ids("<image>")
    assert image_id == loaded.model.config.image_token_id
    assert (enc["input_ids"] == image_id).sum(dim=1).tolist() == [256, 256]
    assert tok.padding_side == "left"
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][1].all()  # shorter row padded left
    # <loc>, <seg> are single, contiguous tokens; the prompt ends with BOS..prompt..\n
    loc = tok.convert_tokens_to_ids([f"<loc{i:04d}>" for i in range(1024)])
    seg = tok.convert_tokens_to_ids([f"<seg{i:03d}>" for i in range(128)])
    assert loc == list(range(loc[0], loc[0] + 1024)) and seg == list(range(loc[0] + 1024, loc[0] + 1152))
    assert tok("<loc0001><seg127> water", add_special_tokens=False)["input_ids"][:2] == [loc[1], seg[127]]
    row = enc["input_ids"][1].tolist()
    assert row[256] == tok.bos_token_id
    assert tok.decode(row[257:]) == "segment water ; river\n"


# --------------------------------------------------------------------------- grammar


@pytest.mark.slow
@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_constrained_outputs_always_parse(loaded, images, sample):
    texts_in = ["<image>segment water"] * len(images)
    gen, texts, grammar = _generate(loaded, images, texts_in, constrained=True, sample=sample, seed=3)
    n_objects = []
    for ids, text in zip(gen.tolist(), texts, strict=True):
        objects = parse_segmentation(text)
        assert all(o.accepted for o in objects), (text, [o.status for o in objects])
        assert all(o.label == "water" and o.codes is not None for o in objects)
        runs = _object_token_runs(ids, grammar)
        assert runs == [(4, SEG_PER_OBJECT)] * len(objects), text
        n_objects.append(len(objects))
    assert max(n_objects) <= 3  # the object budget holds
    assert sum(n_objects) > 0


@pytest.mark.slow
def test_constrained_with_left_padding_and_two_classes(loaded, images):
    """Rows with prompts of different length (left padded) each follow the grammar."""
    texts_in = ["<image>" + build_prompt(["water"]), "<image>" + build_prompt(["water", "river"])] * 4
    gen, texts, grammar = _generate(
        loaded, images[:8], texts_in, constrained=True, classes=("water", "river"), sample=True, seed=1
    )
    labels = set()
    for ids, text in zip(gen.tolist(), texts, strict=True):
        objects = parse_segmentation(text)
        assert all(o.accepted for o in objects), text
        assert _object_token_runs(ids, grammar) == [(4, 16)] * len(objects)
        labels |= {o.label for o in objects}
    assert labels <= {"water", "river"}


def test_unconstrained_random_output_mostly_does_not_parse(loaded, images):
    texts_in = ["<image>segment water"] * len(images)
    _, texts, _ = _generate(loaded, images, texts_in, constrained=False)
    clean = 0
    for text in texts:
        objects = parse_segmentation(text)
        clean += bool(objects) and all(o.accepted for o in objects)
    assert clean <= len(texts) // 4, texts


class _Tok:
    """Minimal tokenizer for grammar unit tests: ids 0 pad, 1 eos, 10.. text, 100.. loc, 1200.. seg."""

    eos_token_id, pad_token_id, unk_token_id = 1, 0, 3
    words = {"▁water": 10, "▁;": 11, "▁": 12, "▁river": 13, "▁water▁body": 14}

    def convert_tokens_to_ids(self, t):
        if t.startswith("<loc"):
            return 100 + int(t[4:8])
        if t.startswith("<seg"):
            return 1200 + int(t[4:7])
        return 3

    def __call__(self, text, add_special_tokens=False):
        parts = text.replace(" ", "▁").replace("▁;▁", "|▁;|▁").split("|")
        return {"input_ids": [self.words[p] for p in parts if p]}


def _step(proc, ids_so_far, vocab=1400, prompt=5):
    rows = [[7] * prompt + list(r) for r in ids_so_far]
    ids = torch.tensor(rows)
    scores = torch.zeros((len(rows), vocab))
    return proc(ids, scores) > float("-inf")


def test_grammar_state_machine_masks():
    g = SegmentationGrammar(_Tok(), ["water"])
    assert g.end_seqs == {"water": [10]} and g.cont_seqs == {"water": [10, 11, 12]}
    budget = g.max_new_tokens(2)

    def proc():  # one processor per generate() call, i.e. per sequence history here
        return g.processor(max_new_tokens=budget, prompt_length=5)

    loc = lambda v: 100 + v  # noqa: E731
    seg = [1200 + i for i in range(16)]
    allowed = _step(proc(), [[]])[0]
    assert allowed[1] and allowed[loc(0)] and allowed[loc(1022)] and not allowed[loc(1023)]  # EOS or y1
    assert allowed.sum() == 1 + 1023
    # y1=500, x1=7 -> y2 in 501..1023
    allowed = _step(proc(), [[loc(500), loc(7)]])[0]
    assert allowed[loc(501) : loc(1023) + 1].all() and allowed.sum() == 1023 - 500
    # two rows in different states in one batch: x2 > x1 for one, finished (EOS/pad only) for the other
    allowed = _step(proc(), [[loc(500), loc(7), loc(900)], [1, 0, 0]])
    assert allowed[0, loc(8)] and not allowed[0, loc(7)] and allowed[0].sum() == 1023 - 7
    assert sorted(allowed[1].nonzero().flatten().tolist()) == [0, 1]
    obj = [loc(500), loc(7), loc(900), loc(8)]
    allowed = _step(proc(), [obj + seg[:15], obj + seg[:15]])
    assert allowed[:, 1200:1328].all() and allowed.sum() == 2 * 128  # only seg tokens
    assert _step(proc(), [obj + seg])[0].nonzero().flatten().tolist() == [10]  # the label
    assert sorted(_step(proc(), [obj + seg + [10]])[0].nonzero().flatten().tolist()) == [1, 11]  # EOS or " ;"
    allowed = _step(proc(), [obj + seg + [10, 11, 12]])[0]
    assert allowed[loc(0) : loc(1022) + 1].all() and allowed.sum() == 1023  # next object's y1 only
    allowed = _step(proc(), [obj + seg + [10, 11, 12, loc(3)]])[0]
    assert allowed[loc(0) : loc(1022) + 1].all() and allowed.sum() == 1023  # its x1
    # after the 2nd (last allowed) object only EOS may follow its label
    two = obj + seg + [10, 11, 12] + obj + seg + [10]
    assert _step(proc(), [two])[0].nonzero().flatten().tolist() == [1]


def test_grammar_budget_never_starts_an_object_it_cannot_finish():
    g = SegmentationGrammar(_Tok(), ["water"])
    short = g.processor(max_new_tokens=20, prompt_length=5)  # an object needs 21
    assert _step(short, [[]])[0].nonzero().flatten().tolist() == [1]
    ok = g.processor(max_new_tokens=21, prompt_length=5)
    assert _step(ok, [[]])[0].sum() == 1024


def test_grammar_min_objects_withholds_eos_while_budget_allows():
    g = SegmentationGrammar(_Tok(), ["water"])
    obj = [100, 101, 900, 901] + [1200] * 16
    assert not _step(g.processor(max_new_tokens=100, min_objects=2, prompt_length=5), [[]])[0, 1]
    allowed = _step(g.processor(max_new_tokens=100, min_objects=2, prompt_length=5), [obj + [10]])[0]
    assert allowed.nonzero().flatten().tolist() == [11]  # " ;" only: a 2nd object must follow
    # no room for a 2nd object: EOS again
    allowed = _step(g.processor(max_new_tokens=30, min_objects=2, prompt_length=5), [obj + [10]])[0]
    assert allowed.nonzero().flatten().tolist() == [1]


def test_grammar_multiword_labels_share_a_trie():
    g = SegmentationGrammar(_Tok(), ["water", "water body", "river"])
    proc = g.processor(max_new_tokens=200, prompt_length=5)
    obj = [100, 101, 900, 901] + [1200] * 16
    assert sorted(_step(proc, [obj])[0].nonzero().flatten().tolist()) == [10, 13, 14]


def test_grammar_rejects_bad_classes():
    with pytest.raises(ValueError):
        SegmentationGrammar(_Tok(), [])
    with pytest.raises(ValueError):
        SegmentationGrammar(_Tok(), ["water ; river"])


# --------------------------------------------------------------------------- segmenter


@pytest.fixture(scope="module")
def segmenter(tiny_paligemma, vae_npz):
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    return PaliGemmaSegmenter.from_options(
        model=str(tiny_paligemma), vae=str(vae_npz), allow_custom_vae=True, device="cpu", batch_size=3
    )


def _batch(rgb, valid=None):
    n, h, w = rgb.shape[:3]
    valid = np.ones((n, h, w), bool) if valid is None else valid
    return ChipBatch(raw=np.zeros((n, 0, h, w), np.float32), rgb=rgb, valid=valid, ids=list(range(n)))


def test_segmenter_protocol_and_results(segmenter, images):
    assert segmenter.name == "paligemma" and segmenter.chip_size == 224
    assert segmenter.bands_needed(RasterBands(4, (None,) * 4, (1, 2, 3))) == []
    segmenter.prepare(_batch(images[:1]))
    results = segmenter.segment(_batch(images[:7]))  # 3 + 3 + 1: a short last batch
    assert len(results) == 7
    for res in results:
        assert isinstance(res, ChipResult)
        assert res.water.shape == (224, 224) and res.water.dtype == bool
        assert isinstance(res.text, str)
        objects = parse_segmentation(res.text)
        assert res.status == ("ok" if objects else "empty")
        assert [o["status"] for o in res.objects] == ["ok"] * len(objects)
        assert [o["box"] for o in res.objects] == [list(o.box) for o in objects]
        if not objects:
            assert not res.water.any()
    assert any(r.water.any() for r in results)
    # batching does not change answers (greedy, no padding: same prompt everywhere)
    again = segmenter.segment(_batch(images[3:4]))
    assert again[0].text == results[3].text and np.array_equal(again[0].water, results[3].water)


def test_segmenter_matches_processor_path_and_pastes_at_chip_size(segmenter, images):
    # the fast input path (chips at model size) equals what the processor builds
    fast = segmenter.model_inputs(images[:2])
    enc = segmenter.processor(
        images=list(images[:2]),
        text=["<image>" + segmenter.prompt] * 2,
        return_tensors="pt",
        padding="longest",
    )
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(fast[key], enc[key])
    assert torch.allclose(fast["pixel_values"], enc["pixel_values"], atol=1e-6)
    # chips of another size are resized for the model and pasted back at their own size
    odd = np.ascontiguousarray(images[:2, :100, :130])
    results = segmenter.segment(_batch(odd))
    assert [r.water.shape for r in results] == [(100, 130), (100, 130)]
    assert all(isinstance(r.text, str) for r in results)


def test_segmenter_skips_chips_without_valid_pixels(segmenter, images):
    valid = np.ones((2, 224, 224), bool)
    valid[1] = False
    results = segmenter.segment(_batch(images[:2], valid))
    assert results[1].text is None and results[1].status.startswith("skipped") and not results[1].water.any()
    assert isinstance(results[0].text, str)


def test_segmenter_rejects_labels_not_asked_for(segmenter):
    text = (
        "<loc0000><loc0000><loc0500><loc0500>"
        + "<seg001>" * 16
        + " forest ; "
        + ("<loc0000><loc0000><loc0500><loc0500>" + "<seg001>" * 16 + " water")
    )
    objects = segmenter.check_objects(text)
    assert [o.status for o in objects] == ["label 'forest' not asked for", "ok"]


def test_unconstrained_segmenter_still_returns_text(tiny_paligemma, vae_npz, images):
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    seg = PaliGemmaSegmenter.from_options(
        model=str(tiny_paligemma),
        vae=str(vae_npz),
        allow_custom_vae=True,
        device="cpu",
        constrained=False,
        max_new_tokens=30,
    )
    results = seg.segment(_batch(images[:4]))
    assert all(isinstance(r.text, str) for r in results)
    assert any(r.status not in ("ok", "empty") for r in results)  # noise gets rejected, with a reason


# --------------------------------------------------------------------------- errors, device


def test_missing_model_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(WeightsError, match="does not exist") as exc:
        load_paligemma(str(missing), device="cpu")
    assert str(missing) in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="config.json"):
        load_paligemma(str(tmp_path / "empty"), device="cpu")


def test_unknown_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError) as exc:
        resolve_model_folder("nonexistent-org/paligemma-nope-224", offline=True, cache_dir=tmp_path / "cache")
    msg = str(exc.value)
    assert "nonexistent-org/paligemma-nope-224" in msg and "offline" in msg
    assert "hf auth login" in msg and "HF_TOKEN" in msg and "folder" in msg
    # the environment switch works like the parameter
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline"):
        resolve_model_folder("nonexistent-org/paligemma-nope-224", cache_dir=tmp_path / "cache")


def test_gated_model_message_says_how_to_get_access(monkeypatch):
    from huggingface_hub import errors as hub_errors

    def gated(*args, **kwargs):
        exc = hub_errors.GatedRepoError.__new__(hub_errors.GatedRepoError)
        Exception.__init__(exc, f"401 Client Error, token {SECRET}")
        raise exc

    monkeypatch.setattr("huggingface_hub.snapshot_download", gated)
    with pytest.raises(WeightsError) as exc:
        resolve_model_folder("google/paligemma2-3b-mix-224", offline=False)
    msg = str(exc.value)
    assert (
        "gated" in msg
        and "accept the licence" in msg
        and "huggingface.co/google/paligemma2-3b-mix-224" in msg
    )
    assert "hf auth login" in msg and "HF_TOKEN" in msg
    assert SECRET not in msg and exc.value.__cause__ is None and exc.value.__suppress_context__


def test_hf_token_never_in_messages_or_logs(tmp_path, monkeypatch, caplog, tiny_paligemma):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    messages = []
    for model in (str(tmp_path / "missing"), "nonexistent-org/paligemma-nope-224"):
        with pytest.raises(WeightsError) as exc:
            load_paligemma(model, device="cpu", offline=True, cache_dir=tmp_path / "cache")
        messages.append(str(exc.value))

    def boom(*args, **kwargs):
        raise OSError(f"connection reset while sending Authorization: Bearer {SECRET}")

    monkeypatch.setattr("huggingface_hub.snapshot_download", boom)
    with pytest.raises(WeightsError) as exc:
        load_paligemma("google/paligemma2-3b-mix-224", device="cpu", offline=False, token=SECRET)
    messages.append(str(exc.value))
    lm = load_paligemma(str(tiny_paligemma), device="cpu", token=SECRET)
    messages.append(lm.describe())
    assert all(SECRET not in m for m in messages), messages
    assert "***" in messages[2] or "REDACTED" in messages[2]  # hf_models scrubs, core.redact too
    assert SECRET not in caplog.text


def test_device_and_dtype_selection():
    cpu = select_device("cpu")
    assert cpu.type == "cpu" and select_dtype(cpu) == torch.float32
    assert select_dtype(cpu, "bf16") == torch.bfloat16
    assert describe_device(cpu, torch.float32).startswith("cpu (") and describe_device(
        cpu, torch.float32
    ).endswith(", float32")
    with pytest.raises(WeightsError, match="dtype"):
        select_dtype(cpu, "int8")
    with pytest.raises(WeightsError, match="device"):
        select_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(WeightsError, match="CUDA"):
            select_device("cuda")
        assert select_device("auto").type in ("cpu", "mps")


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_cli_segment_end_to_end(tmp_path, tiny_paligemma, vae_npz):
    pytest.importorskip("paligemma_qgis.cli.segment")
    pytest.importorskip("paligemma_qgis.core.run.driver")
    pyogrio = pytest.importorskip("pyogrio")
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic_rasters import make_scene

    scene = make_scene(tmp_path / "synth.tif", width=400, height=300)
    out = tmp_path / "out.gpkg"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_TOKEN=SECRET)
    cmd = [
        sys.executable,
        "-m",
        "paligemma_qgis",
        "segment",
        str(scene.path),
        str(out),
        "--engine",
        "paligemma",
        "--model",
        str(tiny_paligemma),
        "--vae",
        str(vae_npz),
        "--allow-custom-vae",
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    assert "device cpu (" in proc.stdout + proc.stderr  # "is my GPU used?" is answered
    layers = {name for name, _ in pyogrio.list_layers(out)}
    assert {"water", "chips"} <= layers
    chips = pyogrio.read_dataframe(out, layer="chips")
    assert len(chips) >= 4  # 400x300 px in 224 px chips with overlap
    ran = chips[~chips["status"].str.startswith("skipped")]
    assert len(ran) > 0
    assert ran["text"].notna().all()
    n_objects = 0
    for text in ran["text"]:
        objects = parse_segmentation(text)
        assert all(o.accepted for o in objects), text
        n_objects += len(objects)
    assert n_objects > 0


class _TwoTokenLabelTok(_Tok):
    """' flooded area' is two tokens (15, 16), ' water' one (10)."""

    def __call__(self, text, add_special_tokens=False):
        seqs = {" water": [10], " water ; ": [10, 11, 12], " flooded area": [15, 16]}
        seqs[" flooded area ; "] = [15, 16, 11, 12]
        return {"input_ids": seqs[text]}


def test_grammar_budget_leaves_room_for_the_longest_label():
    """An object is only started when any allowed label still fits: no label cut at the budget."""
    g = SegmentationGrammar(_TwoTokenLabelTok(), ["water", "flooded area"])
    obj = [100, 101, 900, 901] + [1200] * 16
    tight = g.processor(max_new_tokens=21, prompt_length=5)  # room for ' water' but not ' flooded area'
    assert _step(tight, [[]])[0].nonzero().flatten().tolist() == [1]
    roomy = g.processor(max_new_tokens=22, prompt_length=5)
    assert _step(roomy, [[]])[0].sum() == 1024
    assert sorted(
        _step(g.processor(max_new_tokens=22, prompt_length=5), [obj])[0].nonzero().flatten().tolist()
    ) == [10, 15]
    # a 2nd object after ' water ; ' likewise needs room for the longer label
    first = obj + [10]
    allowed = _step(g.processor(max_new_tokens=21 + 2 + 21, prompt_length=5), [first])[0]
    assert allowed.nonzero().flatten().tolist() == [1]  # 21 + 2 + 22 needed
    allowed = _step(g.processor(max_new_tokens=21 + 2 + 22, prompt_length=5), [first])[0]
    assert sorted(allowed.nonzero().flatten().tolist()) == [1, 11]


def test_generation_gets_a_bidirectional_prefix(segmenter, images, monkeypatch):
    """PaliGemma attends fully over image + prompt; transformers does so only given token_type_ids.

    Without them the prefix is silently causal (other logits, no error), so the segmenter must
    pass them to generate(), 0 over the whole prompt.
    """
    inputs = segmenter.model_inputs(images[:1])
    with torch.inference_mode():
        full = segmenter.model(**inputs).logits[:, -1]
        causal = segmenter.model(**{k: v for k, v in inputs.items() if k != "token_type_ids"}).logits[:, -1]
    assert not torch.allclose(full, causal, atol=1e-4)  # the mask matters for this model

    seen = {}
    real = segmenter.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(segmenter.model, "generate", spy)
    segmenter.generate_text(images[:2])
    tt = seen["token_type_ids"]
    assert tt.shape == seen["input_ids"].shape and not tt.any()


# --------------------------------------------------------------------------- static cache, compile


@pytest.mark.slow
@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "free"])
def test_static_cache_loop_gives_the_same_tokens_as_generate(loaded, vae_npz, images, constrained):
    """The engine's own decode loop over a StaticCache is generate(), token for token.

    Rows stop at different steps (EOS, then pad), the grammar sees every step, and the
    cache is reused by the next call without leaking the previous batch into it.
    """
    from paligemma_qgis.core.model.codec import MaskCodec
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    codec = MaskCodec.from_npz(vae_npz, allow_custom_vae=True)
    opts = {"batch_size": 8, "constrained": constrained, "max_objects": 3}
    if not constrained:
        opts["max_new_tokens"] = 40
    dynamic = PaliGemmaSegmenter(loaded, codec, **opts)
    static = PaliGemmaSegmenter(loaded, codec, cache="static", **opts)
    chips = images[:8]
    want = dynamic.generate_ids(chips)
    got = static.generate_ids(chips)
    assert got.shape == want.shape and torch.equal(got, want)
    eos = loaded.processor.tokenizer.eos_token_id
    if constrained:
        ends = [(row == eos).nonzero().flatten().tolist()[:1] for row in want]
        assert len({e[0] for e in ends if e}) > 1 or any(not e for e in ends)  # rows end at different steps
    # a second, different batch reuses the same cache: still identical to generate()
    other = images[8:16]
    assert torch.equal(static.generate_ids(other), dynamic.generate_ids(other))
    assert len(static.static_decoder.caches) == 1
    assert static.generate_text(chips) == dynamic.generate_text(chips)
    assert static.describe()["cache"] == "static"


def test_static_cache_segment_results_match_dynamic(loaded, vae_npz, images):
    from paligemma_qgis.core.model.codec import MaskCodec
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    codec = MaskCodec.from_npz(vae_npz, allow_custom_vae=True)
    a = PaliGemmaSegmenter(loaded, codec, batch_size=3).segment(_batch(images[:5]))
    b = PaliGemmaSegmenter(loaded, codec, batch_size=3, cache="static").segment(_batch(images[:5]))
    assert [r.text for r in a] == [r.text for r in b]
    assert all(np.array_equal(x.water, y.water) for x, y in zip(a, b, strict=True))


def test_cache_and_compile_options_are_checked(loaded, vae_npz):
    from paligemma_qgis.core.errors import InputError
    from paligemma_qgis.core.model.codec import MaskCodec
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    codec = MaskCodec.from_npz(vae_npz, allow_custom_vae=True)
    assert PaliGemmaSegmenter(loaded, codec).cache == "dynamic"  # the default
    with pytest.raises(InputError, match="cache 'hybrid' is not one of dynamic, static"):
        PaliGemmaSegmenter(loaded, codec, cache="hybrid")
    with pytest.raises(InputError, match="compile needs the static cache"):
        PaliGemmaSegmenter(loaded, codec, compile=True)


@pytest.mark.skipif(
    not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")),
    reason="torch.compile on CPU needs a C++ compiler",
)
@pytest.mark.slow
def test_compiled_decode_step_gives_the_same_tokens(loaded, vae_npz, images):
    """torch.compile of the decode step (about 20 s of compilation on CPU) changes no token."""
    from paligemma_qgis.core.model.codec import MaskCodec
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    codec = MaskCodec.from_npz(vae_npz, allow_custom_vae=True)
    opts = {"batch_size": 4, "max_objects": 1}
    want = PaliGemmaSegmenter(loaded, codec, **opts).generate_ids(images[:4])
    seg = PaliGemmaSegmenter(loaded, codec, cache="static", compile=True, **opts)
    assert torch.equal(seg.generate_ids(images[:4]), want)
    assert seg.static_decoder.step is not None and "compiled" in seg.describe()["cache"]


def test_decoding_options_reach_the_engine_through_the_pipeline(tmp_path, tiny_paligemma, vae_npz):
    """--max-objects / --cache from the spec change what the engine does, not just a field."""
    sys.path.insert(0, str(REPO / "tests"))
    import pyogrio
    from synthetic_rasters import make_scene

    from paligemma_qgis.core.run.driver import segment_raster
    from paligemma_qgis.core.specs import segment_spec

    scene = make_scene(tmp_path / "synth.tif", width=300, height=240)
    common = {
        "raster": str(scene.path),
        "engine": "paligemma",
        "model": str(tiny_paligemma),
        "vae": str(vae_npz),
        "allow_custom_vae": True,
        "device": "cpu",
        "batch_size": 4,
        "max_objects": 1,
    }
    texts = {}
    for cache in ("dynamic", "static"):
        out = tmp_path / f"{cache}.gpkg"
        summary = segment_raster(segment_spec(output=str(out), cache=cache, **common))
        assert summary.details["cache"] == cache
        assert summary.details["max_new_tokens"] == 22  # one object: 4 loc + 16 seg + " water" + EOS
        chips = pyogrio.read_dataframe(out, layer="chips")
        ran = chips[~chips["status"].str.startswith("skipped")]
        assert len(ran) > 0
        texts[cache] = list(ran["text"])
        assert all(len(parse_segmentation(t)) <= 1 for t in texts[cache])
    assert texts["static"] == texts["dynamic"]


def test_bad_decoding_options_fail_before_the_model_loads(tmp_path, vae_npz, capsys):
    """A typo in --cache/--compile/--max-objects must not cost a 3B model load first."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic_rasters import make_scene

    from paligemma_qgis.cli import main

    scene = make_scene(tmp_path / "synth.tif", width=300, height=240)
    out = tmp_path / "out.gpkg"
    base = [
        "segment",
        str(scene.path),
        str(out),
        "--engine",
        "paligemma",
        "--model",
        str(tmp_path / "no-such-model"),  # loading it would fail with another message
        "--vae",
        str(vae_npz),
        "--allow-custom-vae",
        "--device",
        "cpu",
    ]
    for extra, message in (
        (["--compile"], "--compile needs the static cache"),
        (["--max-objects", "0"], "--max-objects must be at least 1"),
    ):
        assert main(base + extra) == 1
        err = capsys.readouterr().err
        assert message in err and "no-such-model" not in err, err
    assert not out.exists()
    assert main(base + ["--cache", "static", "--compile"]) == 1  # valid options: now the model load fails
    assert "no-such-model" in capsys.readouterr().err


def test_out_of_gpu_memory_halves_the_batch_and_loses_no_chip(loaded, vae_npz, images, caplog):
    """A batch too big for the GPU is retried at half size; results equal a run that fitted."""
    from paligemma_qgis.core.errors import InputError
    from paligemma_qgis.core.model.codec import MaskCodec
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter

    codec = MaskCodec.from_npz(vae_npz, allow_custom_vae=True)
    want = PaliGemmaSegmenter(loaded, codec, batch_size=2, max_objects=2).segment(_batch(images[:7]))

    class SmallGpu(PaliGemmaSegmenter):
        limit = 3
        error: BaseException = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls: list[int] = []

        def generate_text(self, rgb):
            self.calls.append(len(rgb))
            if len(rgb) > self.limit:
                raise self.error
            return super().generate_text(rgb)

    mps = RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB)")
    for error in (SmallGpu.error, mps):
        seg = SmallGpu(loaded, codec, batch_size=8, max_objects=2)
        seg.error = error
        with caplog.at_level(logging.WARNING):
            got = seg.segment(_batch(images[:7]))
        assert seg.calls == [7, 3, 3, 1]  # 7 fails, then 7 chips in batches of 3
        assert seg.batch_size == 3  # later calls start at the size that fitted
        assert [r.text for r in got] == [r.text for r in want]
        assert all(np.array_equal(a.water, b.water) for a, b in zip(got, want, strict=True))
        assert "out of GPU memory" in caplog.text

    SmallGpu.limit = 0
    with pytest.raises(InputError, match="out of GPU memory with one chip"):
        SmallGpu(loaded, codec, batch_size=4).segment(_batch(images[:2]))

    class Broken(PaliGemmaSegmenter):  # any other runtime error is not a memory problem
        def generate_text(self, rgb):
            raise RuntimeError("CUDA error: device-side assert triggered")

    broken = Broken(loaded, codec, batch_size=4)
    with pytest.raises(RuntimeError, match="device-side assert"):
        broken.segment(_batch(images[:4]))
    assert broken.batch_size == 4


def test_auto_batch_size_follows_free_gpu_memory():
    """The real 3B config: about 0.1 GiB per chip, so a 24 GB card fills the cap, a small one not."""
    import importlib.util

    from transformers import PaliGemmaConfig

    from paligemma_qgis.core.model.paligemma import MAX_AUTO_BATCH, auto_batch_size, chip_memory_bytes

    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "scripts" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = PaliGemmaConfig(**bench.PALIGEMMA2_3B_224)
    per_chip = chip_memory_bytes(config, 260, 185, 2)
    kv = 2 * 26 * 4 * 256 * (260 + 185) * 2  # layers x kv heads x head dim x tokens x bf16, K and V
    assert kv < per_chip < 4 * kv
    assert chip_memory_bytes(config, 260, 185, 4) > per_chip  # float32 needs more
    assert chip_memory_bytes(config, 1040, 185, 2) > 2 * per_chip  # 448 px: 4x the image tokens
    gib = 2**30
    assert auto_batch_size(70 * gib, per_chip) == MAX_AUTO_BATCH
    assert 1 < auto_batch_size(2 * gib, per_chip) < MAX_AUTO_BATCH
    assert auto_batch_size(0, per_chip) == 1
