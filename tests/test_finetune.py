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

from paligemma_qgis.core.errors import InputError, OutputExistsError  # noqa: E402
from paligemma_qgis.core.model.hf_models import load_paligemma  # noqa: E402
from paligemma_qgis.core.train.finetune import FinetuneOptions, collate, finetune, read_split  # noqa: E402

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


def test_output_folder_refused_before_training(tiny_paligemma, data_dir, tmp_path, monkeypatch):
    """A folder that will be refused at the end must be refused before hours of training."""
    import paligemma_qgis.core.model.hf_models as models

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although the output folder is refused")

    monkeypatch.setattr(models, "load_paligemma", no_loading)
    precious = tmp_path / "my_documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    opts = dict(data_dir=str(data_dir), model=str(tiny_paligemma), device="cpu", overwrite=True)
    with pytest.raises(OutputExistsError, match="not a model folder"):
        finetune(FinetuneOptions(out_dir=str(precious), **opts))
    assert (precious / "thesis.txt").read_text() == "keep me"
    a_file = tmp_path / "model.bin"
    a_file.write_text("x")
    with pytest.raises(OutputExistsError):
        finetune(FinetuneOptions(out_dir=str(a_file), **{**opts, "overwrite": False}))


def test_bfloat16_full_finetune_keeps_float32_master_weights(tiny_paligemma, data_dir, tmp_path):
    """Adam steps of ~lr are below bfloat16's spacing for most weights: pure-bf16 training drops them.

    With float32 master weights the small steps add up, and the saved model is bfloat16 again.
    """
    out = tmp_path / "bf16"
    lr = 2e-4
    s = finetune(
        FinetuneOptions(
            data_dir=str(data_dir),
            out_dir=str(out),
            model=str(tiny_paligemma),
            epochs=10,
            lr=lr,
            batch_size=2,
            grad_accum=1,
            max_steps=10,
            device="cpu",
            dtype="bfloat16",
        )
    )
    assert s.steps == 10 and all(math.isfinite(v) for v in s.train_losses)
    base = load_paligemma(tiny_paligemma, device="cpu", dtype="bfloat16").model
    tuned = load_paligemma(out, device="cpu", dtype="bfloat16").model
    assert all(p.dtype == torch.bfloat16 for p in tuned.parameters())
    from safetensors import safe_open

    with safe_open(str(next(out.glob("*.safetensors"))), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118 (not a dict)
    changed = total = 0
    b, t = base.state_dict(), tuned.state_dict()
    for k in b:
        if "language_model" in k and k.endswith("proj.weight"):
            changed += int((b[k] != t[k]).sum())
            total += b[k].numel()
    # pure bf16: only |w| < ~0.06 can move by 2e-4 (about 40% here); with master weights almost all do
    assert changed / total > 0.8, changed / total
