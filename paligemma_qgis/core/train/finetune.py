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

In stages: ``check_data`` (the inputs and the output folder, before torch loads),
``load_trainable`` (the model, frozen or with adapters), ``train_epochs`` (one optimizer
step per ``grad_accum`` batches, ``optimizer_step``) and ``save_model`` (the folder, moved
into place).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..errors import InputError, OutputExistsError
from ..progress import Progress, check_cancelled
from ..serial import to_data
from .options import FinetuneOptions

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import BatchFeature, PaliGemmaProcessor, PreTrainedModel

__all__ = ["FinetuneOptions", "FinetuneSummary", "collate", "configure_trainable", "finetune", "read_split"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
_FROZEN_BY_DEFAULT = ("vision_tower", "multi_modal_projector")


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

    def to_dict(self) -> dict[str, object]:
        return to_data(self)

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


@dataclass(frozen=True)
class Example:
    """One training example: the image file, the prompt and the answer to learn."""

    image: Path
    prefix: str
    suffix: str


# --------------------------------------------------------------------------- data


def read_split(data_dir: Path, split: str) -> list[Example]:
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
            raise InputError(
                "finetune_image_missing",
                field="data_dir",
                path=str(path),
                line=n,
                image=str(rec["image"]),
                folder=str(data_dir / "images"),
            )
        image_size(image, "training image")  # a corrupt image fails now, not hours into training
        out.append(Example(image=image, prefix=str(rec["prefix"]), suffix=str(rec["suffix"])))
    return out


def collate(processor: PaliGemmaProcessor, examples: Sequence[Example]) -> BatchFeature:
    """A training batch: pixel values, ids, attention, token types and labels (suffix only)."""
    from ..inputs.files import open_image

    images = []
    for ex in examples:
        with open_image(ex.image, "training image") as im:
            images.append(im.convert("RGB"))
    image_token = getattr(processor, "image_token", "<image>")  # older processors lack the attribute
    return processor(
        text=[image_token + ex.prefix for ex in examples],
        images=images,
        suffix=[ex.suffix for ex in examples],
        return_tensors="pt",
        padding="longest",
    )


def check_data(opts: FinetuneOptions) -> tuple[list[Example], list[Example]]:
    """(train, valid) examples, every image checked; the output folder checked too, before any training."""
    data_dir, out_dir = Path(opts.data_dir), Path(opts.out_dir)
    if not data_dir.is_dir():
        raise InputError("finetune_data_not_found", field="data_dir", path=str(data_dir))
    train = read_split(data_dir, "train")
    if not train:
        raise InputError("finetune_no_examples", field="data_dir", path=str(data_dir / "train.jsonl"))
    valid = read_split(data_dir, "valid")
    _check_out(out_dir, opts.overwrite)  # before hours of training, not after
    return train, valid


# --------------------------------------------------------------------------- model setup


def configure_trainable(
    model: PreTrainedModel, *, lora: bool, unfreeze_vision: bool, rank: int, alpha: int
) -> torch.nn.Module:
    """Freeze what should not train; wrap with LoRA adapters if asked. Returns the model to train."""
    if lora:
        from peft import LoraConfig, get_peft_model

        lm = "|".join(LORA_TARGETS)
        pattern = rf".*language_model.*\.({lm})"
        if unfreeze_vision:
            pattern = rf"({pattern})|(.*vision_tower.*\.({'|'.join(VISION_LORA_TARGETS)}))"
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=pattern, bias="none")
        return get_peft_model(model, config)
    for name, param in model.named_parameters():
        frozen = not unfreeze_vision and any(part in name for part in _FROZEN_BY_DEFAULT)
        param.requires_grad_(not frozen)
    return model


@dataclass
class Trainee:
    """The model being trained and what its batches need: processor, device, dtype, precision."""

    model: torch.nn.Module
    processor: PaliGemmaProcessor
    device: torch.device
    dtype: torch.dtype
    mixed: bool  # float32 master weights of a 16-bit model, forward pass under autocast
    params: list[torch.nn.Parameter]


def load_trainable(opts: FinetuneOptions) -> Trainee:
    """The base model, frozen or wrapped as asked; float32 master weights for full 16-bit training."""
    import torch

    from ..model.hf_models import load_paligemma

    torch.manual_seed(opts.seed)
    loaded = load_paligemma(opts.model, device=opts.device, dtype=opts.dtype, offline=opts.offline)
    model = configure_trainable(
        loaded.model,
        lora=opts.lora,
        unfreeze_vision=opts.unfreeze_vision,
        rank=opts.lora_rank,
        alpha=cast(int, opts.lora_alpha),
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Full fine-tuning of a 16-bit model: float32 master weights + autocast (see module doc).
    mixed = not opts.lora and loaded.dtype in (torch.bfloat16, torch.float16)
    if mixed:
        for p in params:
            p.data = p.data.float()
    return Trainee(model, loaded.processor, loaded.device, loaded.dtype, mixed, params)


def _autocast(device: torch.device, dtype: torch.dtype, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision for float32 master weights over a 16-bit model; a no-op otherwise."""
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _batch_to(batch: BatchFeature, device: torch.device, dtype: torch.dtype) -> dict[str, object]:
    import torch

    out: dict[str, object] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device)
            if k == "pixel_values":
                v = v.to(dtype)
        out[k] = v
    return out


def _label_tokens(batch: dict[str, object]) -> int:
    """Tokens that count in the loss (the suffix and EOS; -100 elsewhere)."""
    labels = cast("torch.Tensor", batch["labels"])
    return int((labels[:, 1:] != -100).sum())


def _evaluate_loss(t: Trainee, examples: Sequence[Example], batch_size: int) -> float:
    import torch

    t.model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(t.device, t.dtype, t.mixed):
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = _batch_to(collate(t.processor, chunk), t.device, t.dtype)
            n_tokens = _label_tokens(batch)
            loss = t.model(**batch).loss
            total += float(loss) * n_tokens
            count += n_tokens
    t.model.train()
    return total / count if count else float("nan")


# --------------------------------------------------------------------------- training


def optimizer_step(
    t: Trainee,
    optimizer: torch.optim.Optimizer,
    group: Sequence[Sequence[Example]],
    summary: FinetuneSummary,
    progress: Progress | None,
) -> float:
    """One optimizer step over the batches of ``group``: the token-weighted mean loss (not a mean of means)."""
    import torch

    encoded = []
    for examples in group:
        check_cancelled(progress)
        encoded.append(_batch_to(collate(t.processor, examples), t.device, t.dtype))
    n_tokens = [_label_tokens(batch) for batch in encoded]
    total_tokens = max(sum(n_tokens), 1)
    step_loss = 0.0
    for batch, n in zip(encoded, n_tokens, strict=True):
        with _autocast(t.device, t.dtype, t.mixed):
            loss = t.model(**batch).loss * (n / total_tokens)
        loss.backward()
        step_loss += float(loss.detach())
        summary.examples_seen += int(cast("torch.Tensor", batch["input_ids"]).shape[0])
    if not math.isfinite(step_loss):
        raise InputError("finetune_diverged", field="lr", step=summary.steps + 1, loss=step_loss)
    torch.nn.utils.clip_grad_norm_(t.params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss


def _total_steps(opts: FinetuneOptions, n_train: int) -> int:
    batches_per_epoch = math.ceil(n_train / opts.batch_size)
    total = math.ceil(batches_per_epoch / opts.grad_accum) * opts.epochs
    if opts.max_steps is not None and opts.max_steps > 0:
        total = min(total, opts.max_steps)
    return total


def train_epochs(
    t: Trainee,
    train: Sequence[Example],
    valid: Sequence[Example],
    opts: FinetuneOptions,
    summary: FinetuneSummary,
    progress: Progress | None,
) -> None:
    """Epochs of shuffled batches until the steps are done; a validation loss after each epoch."""
    import torch

    optimizer = torch.optim.AdamW(t.params, lr=opts.learning_rate, weight_decay=opts.weight_decay)
    total_steps = _total_steps(opts, len(train))
    generator = torch.Generator().manual_seed(opts.seed)
    done = False
    for _epoch in range(opts.epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        batches = [
            [train[i] for i in order[k : k + opts.batch_size]] for k in range(0, len(order), opts.batch_size)
        ]
        optimizer.zero_grad(set_to_none=True)
        for first in range(0, len(batches), opts.grad_accum):
            step_loss = optimizer_step(
                t, optimizer, batches[first : first + opts.grad_accum], summary, progress
            )
            summary.steps += 1
            summary.train_losses.append(step_loss)
            if progress is not None:
                progress.report(summary.steps, total_steps, f"loss {step_loss:.4f}")
            if summary.steps >= total_steps:
                done = True
                break
        if valid:
            summary.valid_losses.append(_evaluate_loss(t, valid, opts.batch_size))
        if done:
            break


# --------------------------------------------------------------------------- output folder


def _check_out(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output that may not be replaced: checked before training and again before saving."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise OutputExistsError("train_folder_not_empty", field="out_dir", path=str(out_dir))
        if not out_dir.is_dir():
            raise OutputExistsError("finetune_out_is_file", field="out_dir", path=str(out_dir))
        if not (out_dir / "config.json").is_file():
            raise OutputExistsError("finetune_not_a_model", field="out_dir", path=str(out_dir))


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    _check_out(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))


def save_model(t: Trainee, opts: FinetuneOptions, summary: FinetuneSummary) -> None:
    """A plain PaliGemma folder (LoRA merged, the model's dtype) with finetune.json, moved into place."""
    out_dir = Path(opts.out_dir)
    tmp = _prepare_out(out_dir, opts.overwrite)
    try:
        model = cast("PeftModel", t.model).merge_and_unload() if opts.lora else t.model
        if t.mixed:
            model.to(t.dtype)  # master weights back to the model's dtype
        model.eval()
        cast("PreTrainedModel", model).save_pretrained(tmp)
        t.processor.save_pretrained(tmp)
        (tmp / "finetune.json").write_text(
            json.dumps({"options": to_data(opts), "summary": summary.to_dict()}, indent=2), encoding="utf-8"
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finetune(options: FinetuneOptions, progress: Progress | None = None) -> FinetuneSummary:
    """Train on DATA_DIR/train.jsonl, validate on valid.jsonl, save a loadable model folder."""
    train, valid = check_data(options)
    from ..model.hf_models import describe_device  # after the cheap checks of the inputs: torch

    trainee = load_trainable(options)
    summary = FinetuneSummary(
        out_dir=str(Path(options.out_dir)),
        trainable_parameters=sum(p.numel() for p in trainee.params),
        total_parameters=sum(p.numel() for p in trainee.model.parameters()),
        device=describe_device(trainee.device, trainee.dtype),
    )
    train_epochs(trainee, train, valid, options, summary, progress)
    check_cancelled(progress)
    save_model(trainee, options, summary)
    return summary
