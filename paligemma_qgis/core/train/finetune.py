"""Fine-tune PaliGemma on exported chips (train.jsonl / valid.jsonl + images/).

The recipe of the Hugging Face PaliGemma fine-tuning guides, kept small and explicit:

- ``PaliGemmaProcessor(text="<image>" + prefix, images, suffix=...)`` builds
  ``<image>*N <bos> prefix \\n suffix <eos>`` and labels where only the suffix (and EOS)
  count: the prefix is context, not something to learn.
- The vision tower and the projector are frozen by default: with a few hundred chips,
  training SigLIP mostly overfits; ``unfreeze_vision`` trains them too.
- ``lora``: low-rank adapters (peft) on the language model's projections (and on the vision
  tower's when it is unfrozen); they are merged into the weights before saving, so the
  output folder is a plain PaliGemma folder that ``segment --model DIR`` loads as is.
- bfloat16 weights on CUDA (``engine.models.select_dtype``), float32 elsewhere; LoRA
  adapters stay float32. Full fine-tuning in a 16-bit dtype keeps float32 master copies of
  the trained weights and runs the forward pass under autocast: an Adam step of about
  ``lr`` (2e-5) is below bfloat16's spacing for most weights (|w| > ~0.01), so pure-bf16
  training would silently drop it. That costs twice the memory for the trained weights;
  LoRA is the low-memory choice. The saved model is in the 16-bit dtype again.
  Gradient accumulation gives large effective batches on small GPUs.
- A validation loss after each epoch (when valid.jsonl has lines).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError, OutputExistsError
from ..progress import Progress, check_cancelled

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
_FROZEN_BY_DEFAULT = ("vision_tower", "multi_modal_projector")


@dataclass
class FinetuneOptions:
    """Options of ``finetune`` (JSON-serialisable). ``max_steps`` counts optimizer steps."""

    data_dir: str
    out_dir: str
    model: str
    epochs: int = 1
    lr: float | None = None  # default: 2e-5 full fine-tuning, 2e-4 LoRA
    batch_size: int = 2
    grad_accum: int = 8
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    unfreeze_vision: bool = False
    max_steps: int | None = None
    device: str | None = None
    dtype: str | None = None
    weight_decay: float = 0.0
    seed: int = 0
    offline: bool | None = None
    overwrite: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneOptions:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown finetune option(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.lora else 2e-5)


@dataclass
class FinetuneSummary:
    out_dir: str
    steps: int = 0
    examples_seen: int = 0
    train_losses: list[float] = field(default_factory=list)  # one per optimizer step
    valid_losses: list[float] = field(default_factory=list)  # one per epoch
    trainable_parameters: int = 0
    total_parameters: int = 0
    device: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"saved fine-tuned model to {self.out_dir} after {self.steps} steps ({self.examples_seen} examples) "
            f"on {self.device}",
            f"trainable parameters: {self.trainable_parameters:,} of {self.total_parameters:,}",
        ]
        if self.train_losses:
            out.append(f"train loss: first {self.train_losses[0]:.4f}, last {self.train_losses[-1]:.4f}")
        if self.valid_losses:
            out.append("valid loss per epoch: " + ", ".join(f"{v:.4f}" for v in self.valid_losses))
        return out


# --------------------------------------------------------------------------- data


def read_split(data_dir: Path, split: str) -> list[dict]:
    """Lines of DATA_DIR/<split>.jsonl with the image path resolved (images/ then the folder)."""
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        return []
    from ..inputs.files import image_size, read_jsonl

    out = []
    for n, rec in read_jsonl(path, ("image", "prefix", "suffix")):
        image = next(
            (p for p in (data_dir / "images" / rec["image"], data_dir / rec["image"]) if p.is_file()), None
        )
        if image is None:
            raise InputError(f"{path}: line {n}: image {rec['image']} not found in {data_dir / 'images'}")
        image_size(image, "training image")  # a corrupt image fails now, not hours into training
        out.append({"image": image, "prefix": str(rec["prefix"]), "suffix": str(rec["suffix"])})
    return out


def collate(processor: Any, examples: list[dict]) -> Any:
    """A training batch: pixel values, ids, attention, token types and labels (suffix only)."""
    from ..inputs.files import open_image

    images = []
    for ex in examples:
        with open_image(ex["image"], "training image") as im:
            images.append(im.convert("RGB"))
    image_token = getattr(processor, "image_token", "<image>")
    return processor(
        text=[image_token + ex["prefix"] for ex in examples],
        images=images,
        suffix=[ex["suffix"] for ex in examples],
        return_tensors="pt",
        padding="longest",
    )


# --------------------------------------------------------------------------- model setup


def configure_trainable(model: Any, *, lora: bool, unfreeze_vision: bool, rank: int, alpha: int) -> Any:
    """Freeze what should not train; wrap with LoRA adapters if asked. Returns the model to train."""
    if lora:
        from peft import LoraConfig, get_peft_model

        lm = "|".join(LORA_TARGETS)
        pattern = rf".*language_model.*\.({lm})"
        if unfreeze_vision:
            pattern = rf"({pattern})|(.*vision_tower.*\.({'|'.join(VISION_LORA_TARGETS)}))"
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=pattern, bias="none")
        model = get_peft_model(model, config)
        return model
    for name, param in model.named_parameters():
        frozen = not unfreeze_vision and any(part in name for part in _FROZEN_BY_DEFAULT)
        param.requires_grad_(not frozen)
    return model


def _autocast(device: Any, dtype: Any, enabled: bool) -> Any:
    """Mixed precision for float32 master weights over a 16-bit model; a no-op otherwise."""
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _batch_to(batch: Any, device: Any, dtype: Any) -> dict:
    out = {}
    for k, v in batch.items():
        if hasattr(v, "to"):
            v = v.to(device)
            if k == "pixel_values":
                v = v.to(dtype)
        out[k] = v
    return out


def _evaluate_loss(
    model: Any,
    processor: Any,
    examples: list[dict],
    batch_size: int,
    device: Any,
    dtype: Any,
    mixed: bool = False,
) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(device, dtype, mixed):
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = _batch_to(collate(processor, chunk), device, dtype)
            n_tokens = int((batch["labels"][:, 1:] != -100).sum())
            loss = model(**batch).loss
            total += float(loss) * n_tokens
            count += n_tokens
    model.train()
    return total / count if count else float("nan")


# --------------------------------------------------------------------------- output folder


def _check_out(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output that may not be replaced: checked before training and again before saving."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
        if not out_dir.is_dir():
            raise OutputExistsError(f"{out_dir} is a file, not a model folder; refusing to replace it")
        if not (out_dir / "config.json").is_file():
            raise OutputExistsError(f"{out_dir} is not a model folder; refusing to replace it")


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    _check_out(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))


# --------------------------------------------------------------------------- training


def finetune(options: FinetuneOptions, progress: Progress | None = None) -> FinetuneSummary:
    """Train on DATA_DIR/train.jsonl, validate on valid.jsonl, save a loadable model folder."""
    opts = options
    data_dir, out_dir = Path(opts.data_dir), Path(opts.out_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: training data folder not found")
    for name, value in (
        ("epochs", opts.epochs),
        ("batch size", opts.batch_size),
        ("grad accum", opts.grad_accum),
    ):
        if value < 1:
            raise InputError(f"{name} must be at least 1, not {value}")
    train = read_split(data_dir, "train")
    if not train:
        raise InputError(f"{data_dir / 'train.jsonl'}: no training examples")
    valid = read_split(data_dir, "valid")
    _check_out(out_dir, opts.overwrite)  # before hours of training, not after

    import torch  # after the cheap checks of the inputs

    from ..model.hf_models import describe_device, load_paligemma

    torch.manual_seed(opts.seed)
    loaded = load_paligemma(opts.model, device=opts.device, dtype=opts.dtype, offline=opts.offline)
    processor, device, dtype = loaded.processor, loaded.device, loaded.dtype
    model = configure_trainable(
        loaded.model,
        lora=opts.lora,
        unfreeze_vision=opts.unfreeze_vision,
        rank=opts.lora_rank,
        alpha=opts.lora_alpha,
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Full fine-tuning of a 16-bit model: float32 master weights + autocast (see module doc).
    mixed = not opts.lora and dtype in (torch.bfloat16, torch.float16)
    if mixed:
        for p in params:
            p.data = p.data.float()
    summary = FinetuneSummary(
        out_dir=str(out_dir),
        trainable_parameters=sum(p.numel() for p in params),
        total_parameters=sum(p.numel() for p in model.parameters()),
        device=describe_device(device, dtype),
    )
    optimizer = torch.optim.AdamW(params, lr=opts.learning_rate, weight_decay=opts.weight_decay)
    batches_per_epoch = math.ceil(len(train) / opts.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / opts.grad_accum)
    total_steps = steps_per_epoch * opts.epochs
    if opts.max_steps is not None:
        total_steps = min(total_steps, opts.max_steps) if opts.max_steps > 0 else total_steps
    generator = torch.Generator().manual_seed(opts.seed)

    step = 0
    done = False
    for _epoch in range(opts.epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        batches = [order[i : i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
        optimizer.zero_grad(set_to_none=True)
        for first in range(0, len(batches), opts.grad_accum):
            group = batches[first : first + opts.grad_accum]
            n_tokens = []
            encoded = []
            for idx in group:
                check_cancelled(progress)
                batch = _batch_to(collate(processor, [train[i] for i in idx]), device, dtype)
                encoded.append(batch)
                n_tokens.append(int((batch["labels"][:, 1:] != -100).sum()))
            total_tokens = max(sum(n_tokens), 1)
            step_loss = 0.0
            for batch, n in zip(encoded, n_tokens, strict=True):
                # Token-weighted mean over the accumulated batches (not a mean of means).
                with _autocast(device, dtype, mixed):
                    loss = model(**batch).loss * (n / total_tokens)
                loss.backward()
                step_loss += float(loss.detach())
                summary.examples_seen += int(batch["input_ids"].shape[0])
            if not math.isfinite(step_loss):
                raise InputError(
                    f"training diverged at step {step + 1} (loss {step_loss}); lower the learning rate"
                )
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            summary.train_losses.append(step_loss)
            if progress is not None:
                progress.report(step, total_steps, f"loss {step_loss:.4f}")
            if step >= total_steps:
                done = True
                break
        if valid:
            summary.valid_losses.append(
                _evaluate_loss(model, processor, valid, opts.batch_size, device, dtype, mixed)
            )
        if done:
            break
    summary.steps = step

    check_cancelled(progress)
    tmp = _prepare_out(out_dir, opts.overwrite)
    try:
        if opts.lora:
            model = model.merge_and_unload()
        if mixed:
            model.to(dtype)  # master weights back to the model's dtype
        model.eval()
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "finetune.json").write_text(
            json.dumps({"options": opts.to_dict(), "summary": summary.to_dict()}, indent=2), encoding="utf-8"
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
