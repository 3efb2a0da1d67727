"""Fine-tuning on CPU with the tiny random PaliGemma: labels, loss goes down, saved folder reloads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch  # noqa: E402

from paligemma_qgis.core.engine.models import load_paligemma  # noqa: E402
from paligemma_qgis.core.errors import InputError, OutputExistsError  # noqa: E402
from paligemma_qgis.core.finetune import FinetuneOptions, collate, finetune, read_split  # noqa: E402

SUFFIX = (
    "<loc0100><loc0200><loc0600><loc0900>"
    + "".join(f"<seg{i:03d}>" for i in range(0, 32, 2))
    + " water ; <loc0700><loc0050><loc0800><loc0300>"
    + "".join(f"<seg{i:03d}>" for i in range(100, 116))
    + " water"
)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    (d / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(d / "images" / f"c{i}.png")
        rows.append({"image": f"c{i}.png", "prefix": "segment water", "suffix": SUFFIX if i == 0 else ""})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "valid.jsonl").write_text(json.dumps(rows[0]) + "\n")
    return d


def test_labels_cover_only_the_suffix(tiny_paligemma, data_dir):
    loaded = load_paligemma(tiny_paligemma, device="cpu")
    proc = loaded.processor
    examples = read_split(data_dir, "train")
    batch = collate(proc, examples)
    labels, ids = batch["labels"], batch["input_ids"]
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    assert (labels[ids == image_id] == -100).all()  # image tokens and prefix: no loss
    suffix_ids = proc.tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]
    kept = labels[0][labels[0] != -100].tolist()
    assert kept == suffix_ids + [proc.tokenizer.eos_token_id]  # the suffix, then EOS
    assert labels[1][labels[1] != -100].tolist() == [proc.tokenizer.eos_token_id]  # "no water": EOS only


def _weights(model, part):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if part in k}


def test_full_finetune_loss_decreases_and_reloads(tiny_paligemma, data_dir, tmp_path):
    before = load_paligemma(tiny_paligemma, device="cpu").model
    out = tmp_path / "ft"
    s = finetune(
        FinetuneOptions(
            data_dir=str(data_dir),
            out_dir=str(out),
            model=str(tiny_paligemma),
            epochs=20,
            lr=3e-3,
            batch_size=2,
            grad_accum=1,
            max_steps=8,
            device="cpu",
        )
    )
    assert s.steps == 8 and len(s.train_losses) == 8
    assert all(math.isfinite(v) for v in s.train_losses + s.valid_losses)
    assert s.train_losses[-1] < 0.8 * s.train_losses[0]  # the same batch each step: must be learnt
    assert len(s.valid_losses) == 8  # one per epoch (one step per epoch here)
    assert s.trainable_parameters < s.total_parameters  # vision tower + projector frozen

    after = load_paligemma(out, device="cpu")  # what segment --model DIR does
    v0, v1 = _weights(before, "vision_tower"), _weights(after.model, "vision_tower")
    assert v0.keys() == v1.keys() and all(torch.equal(v0[k], v1[k]) for k in v0)
    l0, l1 = _weights(before, "language_model"), _weights(after.model, "language_model")
    assert any(not torch.equal(l0[k], l1[k]) for k in l0)
    assert json.loads((out / "finetune.json").read_text())["summary"]["steps"] == 8

    with pytest.raises(OutputExistsError):
        finetune(
            FinetuneOptions(data_dir=str(data_dir), out_dir=str(out), model=str(tiny_paligemma), device="cpu")
        )


def test_lora_merged_and_reloads(tiny_paligemma, data_dir, tmp_path):
    out = tmp_path / "lora"
    s = finetune(
        FinetuneOptions(
            data_dir=str(data_dir),
            out_dir=str(out),
            model=str(tiny_paligemma),
            epochs=4,
            lr=1e-2,
            batch_size=1,
            grad_accum=2,
            lora=True,
            lora_rank=4,
            max_steps=4,
            device="cpu",
        )
    )
    assert s.steps == 4 and all(math.isfinite(v) for v in s.train_losses)
    assert s.trainable_parameters < s.total_parameters // 5
    reloaded = load_paligemma(out, device="cpu").model
    assert not any("lora" in k for k in reloaded.state_dict())  # merged: a plain PaliGemma folder
    base = load_paligemma(tiny_paligemma, device="cpu").model
    l0, l1 = _weights(base, "language_model"), _weights(reloaded, "language_model")
    assert any(not torch.equal(l0[k], l1[k]) for k in l0 if "q_proj" in k)


def test_bad_data_dir(tmp_path, tiny_paligemma):
    with pytest.raises(InputError, match="not found"):
        finetune(FinetuneOptions(data_dir=str(tmp_path / "nope"), out_dir=str(tmp_path / "o"), model="x"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text(
        json.dumps({"image": "gone.png", "prefix": "p", "suffix": ""}) + "\n"
    )
    with pytest.raises(InputError, match="gone.png"):
        finetune(FinetuneOptions(data_dir=str(tmp_path / "d"), out_dir=str(tmp_path / "o"), model="x"))


def test_cli_finetune(tiny_paligemma, data_dir, tmp_path, capsys):
    from paligemma_qgis.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "finetune",
            str(data_dir),
            str(out),
            "--model",
            str(tiny_paligemma),
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1 and (out / "config.json").is_file()
