"""Build a tiny, random-weight PaliGemma folder for offline tests and CPU benchmarks.

    python scripts/make_tiny_paligemma.py OUT_DIR

The folder has the layout of a real Hugging Face PaliGemma 2 checkpoint (config.json,
model.safetensors, processor/tokenizer/image-processor files), so it goes through the
same loading code as ``google/paligemma2-3b-mix-224``; only the sizes are tiny:

- vision: SigLIP, 224 px, patch 14 -> 256 image tokens (as the real 224 models);
- text: Gemma 2 (the PaliGemma 2 backbone: soft-capping, sliding/global layers), 2 layers;
- tokenizer: a byte-fallback BPE trained here with the ``tokenizers`` library on a few
  prompts, wrapped as GemmaTokenizer, with ``<image>``, ``<loc0000>``..``<loc1023>`` and
  ``<seg000>``..``<seg127>`` as single tokens (in that order, contiguous, like Gemma's).

Nothing is downloaded. The weights are random, so the model's text is noise: that is what
tests of the constrained decoder want.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Gemma ids 0..4
LOC_TOKENS = [f"<loc{i:04d}>" for i in range(1024)]
SEG_TOKENS = [f"<seg{i:03d}>" for i in range(128)]
IMAGE_TOKEN = "<image>"

# Text the tiny tokenizer should cover with few tokens (prompts, labels, separators).
CORPUS = [
    "segment water",
    "segment water ; river",
    "segment water ; river ; lake ; flood ; reservoir ; sea",
    " water ; water ; river ; lake",
    "detect water",
    "caption en",
    "answer en what is in the image?",
    "water body, pond, canal, wetland, ocean",
]


def build_tokenizer(vocab_size: int = 320, *, gemma_ids: bool = False):
    """A Gemma-style BPE (spaces -> '▁', byte fallback) trained on CORPUS, plus PaliGemma's tokens.

    gemma_ids: pad the vocabulary with unused tokens so that <loc0000> is 256000, <seg000>
    257024 and <image> 257152, as in the real Gemma tokenizer (for full-size benchmarks).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    # Train with the same normalizer/pre-tokenizer GemmaTokenizer uses, so the merges apply there.
    probe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    probe.normalizer = normalizers.Replace(" ", "▁")
    probe.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(byte_tokens),
        special_tokens=SPECIAL + byte_tokens,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789▁;,.?!:\n-"),
        show_progress=False,
    )
    probe.train_from_iterator(CORPUS * 20, trainer=trainer)
    trained = probe.get_vocab()
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(probe.to_str())["model"]["merges"]
    ]

    vocab = dict(sorted(trained.items(), key=lambda kv: kv[1]))
    next_id = max(vocab.values()) + 1
    if gemma_ids:
        for i in range(next_id, 256000):
            vocab[f"<unused{i}>"] = i
        next_id = 256000
    for tok in (
        [*LOC_TOKENS, *SEG_TOKENS, IMAGE_TOKEN] if gemma_ids else [IMAGE_TOKEN, *LOC_TOKENS, *SEG_TOKENS]
    ):
        vocab[tok] = next_id
        next_id += 1
    tok = GemmaTokenizer(vocab=vocab, merges=merges)
    # <image> is special (skipped when decoding); loc/seg are ordinary added tokens that
    # decode as text, as in Gemma's tokenizer.json. Their ids stay the ones given above.
    tok.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]})
    tok.add_tokens(LOC_TOKENS + SEG_TOKENS)
    return tok


def tiny_config(vocab_size: int, image_token_id: int, *, image_size: int = 224, pad_to: int = 64):
    """PaliGemma 2 layout with tiny widths; vocab padded to a multiple of pad_to like the real one."""
    from transformers import PaliGemmaConfig

    padded = -(-vocab_size // pad_to) * pad_to
    text_hidden = 64
    return PaliGemmaConfig(
        tie_word_embeddings=False,
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 14,
            "image_size": image_size,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "gemma2",
            "hidden_size": text_hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,
            "sliding_window": 512,
            "vocab_size": padded,
            "max_position_embeddings": 2048,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "bos_token_id": 2,
            "tie_word_embeddings": False,
        },
        image_token_index=image_token_id,
        projection_dim=text_hidden,
        hidden_size=text_hidden,
        vocab_size=padded,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


def build_processor(image_size: int = 224, *, gemma_ids: bool = False):
    """PaliGemmaProcessor = SigLIP image processor (as in the real preprocessor config) + tiny tokenizer."""
    from transformers import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    if image_size % 14:
        raise ValueError(f"image_size must be a multiple of the patch size 14, got {image_size}")
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        image_seq_length=(image_size // 14) ** 2,
    )
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=build_tokenizer(gemma_ids=gemma_ids))


def build_tiny_paligemma(out_dir: str | Path, *, image_size: int = 224, seed: int = 0) -> Path:
    """Write a tiny random PaliGemma (model + processor) to out_dir and return the folder."""
    import torch
    from transformers import PaliGemmaForConditionalGeneration

    out = Path(out_dir)
    processor = build_processor(image_size)
    tokenizer = processor.tokenizer
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), image_size=image_size)
    model = PaliGemmaForConditionalGeneration(config).eval()
    # The default init (std 0.02, tied embeddings) makes a random model repeat one token
    # whatever the image. Unit-gain weights and an untied, unit-scale output layer give
    # varied, image-dependent noise: a better stress test for the grammar and the parser.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, param.shape[-1] ** -0.5)
        model.lm_head.weight.normal_(0.0, 1.0)
    model.generation_config.max_new_tokens = 64
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = build_tiny_paligemma(args.out_dir, image_size=args.image_size, seed=args.seed)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"tiny PaliGemma written to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
