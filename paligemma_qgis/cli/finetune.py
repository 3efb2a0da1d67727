"""``finetune``: train PaliGemma on an export folder; the result loads with ``segment --model DIR``."""

from __future__ import annotations

import argparse
import json

from ..core.train.options import FinetuneOptions
from .args import default, options_from_args
from .progress import cli_progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune PaliGemma on exported chips",
        description="Train on DATA_DIR/train.jsonl (+ images/), report the loss on valid.jsonl after each "
        "epoch, and save a model folder (LoRA merged) with its processor to OUT_DIR. The vision tower "
        "and projector stay frozen unless --unfreeze-vision. bfloat16 on CUDA, float32 on CPU.",
    )
    p.add_argument("data_dir", help="folder written by export / export-pairs")
    p.add_argument("out_dir", help="output model folder")
    p.add_argument("--model", required=True, help="base model: Hugging Face id or local folder")
    p.add_argument("--epochs", type=int, default=default(FinetuneOptions, "epochs"))
    p.add_argument("--lr", type=float, help="learning rate (default 2e-5, or 2e-4 with --lora)")
    p.add_argument("--batch-size", type=int, default=default(FinetuneOptions, "batch_size"))
    grad_accum = default(FinetuneOptions, "grad_accum")
    p.add_argument(
        "--grad-accum",
        type=int,
        default=grad_accum,
        help=f"batches per optimizer step (default {grad_accum})",
    )
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (merged before saving)")
    p.add_argument(
        "--lora-rank",
        type=int,
        default=default(FinetuneOptions, "lora_rank"),
        help="LoRA rank (alpha: twice it)",
    )
    p.add_argument("--unfreeze-vision", action="store_true", help="train the vision tower and projector too")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", help="auto (default: bfloat16 on CUDA), bfloat16 or float32")
    p.add_argument("--seed", type=int, default=default(FinetuneOptions, "seed"))
    p.add_argument(
        "--offline", action="store_true", default=None, help="use the local Hugging Face cache only"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.train.finetune import finetune

    opts = options_from_args(FinetuneOptions, args)
    with cli_progress("finetune", "step") as progress:
        summary = finetune(opts, progress)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else "\n".join(summary.lines()))
    return 0
