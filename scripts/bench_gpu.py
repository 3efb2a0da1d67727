"""Benchmark the PaliGemma engine: chips/s batched vs naive, MFU, and where the time goes.

    python scripts/bench_gpu.py                 # real paligemma2-3b-mix-224 architecture, random bf16 weights (GPU)
    python scripts/bench_gpu.py --tiny          # tiny random model on CPU (exercises this script anywhere)
    python scripts/bench_gpu.py --cache dynamic,static --compile off,on   # sweep decode paths (the default)

Nothing is downloaded: the full-size model is built from its config (values below, from
google/paligemma2-3b-mix-224 config.json) with random weights, and the tokenizer is the
locally built one from make_tiny_paligemma.py with Gemma's token ids (<loc0000> = 256000).
Random weights write random (but grammar-valid) text; to keep the work per chip fixed and
realistic, every chip is made to write exactly --objects objects (min_objects), i.e. the
same number of tokens in every mode.

Modes, in the same run and on the same chips:
- naive: what a model-card snippet does: processor + ``generate`` per chip (batch 1,
  default settings, no grammar), then parse + codec per chip; token count matched.
- engine at each --batch-sizes x --cache x --compile: PaliGemmaSegmenter.segment (fast
  input path, batched constrained greedy decoding, one batched codec call, paste).
  cache "dynamic" is transformers' generate(); "static" the engine's own loop over a
  pre-allocated StaticCache; compile "on" (static only) torch.compiles the decode step
  (CUDA graphs on CUDA). Every configuration must give the same texts as the first one
  (greedy decoding, same chips): the script checks it and says so.

Where time goes (engine, largest batch, per cache/compile configuration): inputs (preprocess + host->device), prefill
(vision tower + prompt forward), decode (per step), codec (batched decode), post (parse +
paste). MFU: model FLOPs per chip (2 x params x tokens, counted per part) / time / peak.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

# google/paligemma2-3b-mix-224 config.json (text: Gemma 2 2B; vision: SigLIP So400m/14 at 224 px)
PALIGEMMA2_3B_224 = {
    "image_token_index": 257152,
    "projection_dim": 2304,
    "hidden_size": 2304,
    "vocab_size": 257216,
    "text_config": {
        "model_type": "gemma2",
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "vocab_size": 257216,
        "max_position_embeddings": 8192,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 224,
        "vision_use_head": False,
    },
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
}

# Dense bf16 tensor-core peaks (TFLOP/s), by device-name substring; --peak-tflops overrides.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,  # fp16 (no bf16 tensor cores)
    "T4": 65.0,  # fp16
}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_full_model(device, dtype):
    """The real architecture with random weights, created directly on the device."""
    import torch
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    config = PaliGemmaConfig(**PALIGEMMA2_3B_224)
    with torch.device(device):
        model = PaliGemmaForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()


def count_params(model) -> dict[str, int]:
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    proj = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    lm = model.model.language_model
    embed = lm.get_input_embeddings().weight.numel()
    text = sum(p.numel() for p in lm.parameters()) - embed
    head = model.get_output_embeddings().weight.numel()  # tied or not: one vocab x hidden matmul
    return {"vision": vision + proj, "text": text, "head": head, "embed": embed}


def flops_per_chip(params: dict[str, int], cfg, prompt_tokens: int, new_tokens: int) -> dict[str, float]:
    """2 x params x tokens per part, plus attention score/value FLOPs (small at these lengths).

    The prefix (image + prompt) attends bidirectionally, so its scores are a full L x L
    matrix (4 L^2 d: QK^T and AV), not the causal half.
    """
    tc = cfg.text_config
    n_img = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    vision = 2 * params["vision"] * n_img
    vis_attn = 4 * n_img * n_img * cfg.vision_config.hidden_size * cfg.vision_config.num_hidden_layers
    attn_dim = tc.num_attention_heads * tc.head_dim * tc.num_hidden_layers
    prefill = 2 * params["text"] * prompt_tokens + 2 * params["head"] + 4 * prompt_tokens**2 * attn_dim
    ctx = prompt_tokens + new_tokens / 2
    decode = new_tokens * (2 * (params["text"] + params["head"]) + 4 * ctx * attn_dim)
    total = vision + vis_attn + prefill + decode
    return {"vision": vision + vis_attn, "prefill_text": prefill, "decode": decode, "total": total}


def peak_tflops(device, override: float | None) -> float | None:
    import torch

    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, val in PEAK_BF16_TFLOPS.items():
        if key in name:
            return val
    return None


def make_chips(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Water-like scenes: land with a dark lake blob and noise (content barely matters to a random model)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    chips = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = np.array([90, 110, 70]) + rng.normal(0, 6, (size, size, 3))
        cy, cx, r = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size, rng.uniform(0.1, 0.35) * size
        lake = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        base[lake] = np.array([30, 60, 80]) + rng.normal(0, 3, (lake.sum(), 3))
        chips[i] = np.clip(base, 0, 255).astype(np.uint8)
    return chips


def bench_naive(seg, chips: np.ndarray, new_tokens: int, objects: int) -> float:
    """One default generate() per chip through the processor; parse + codec per chip. Returns seconds."""
    import torch

    from paligemma_qgis.core.model.tokens import parse_segmentation

    lm = seg.loaded
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for chip in chips:
        enc = lm.processor(images=chip, text="<image>" + seg.prompt, return_tensors="pt")
        enc = {k: v.to(lm.device) for k, v in enc.items() if k != "labels"}
        enc["pixel_values"] = enc["pixel_values"].to(lm.dtype)
        with torch.inference_mode():
            out = lm.model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        text = lm.processor.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        parse_segmentation(text)
        seg.codec.decode(rng.integers(0, 128, (objects, 16)))  # what a valid answer would cost
    _sync(lm.device)
    return time.perf_counter() - t0


def breakdown(seg, chips: np.ndarray) -> dict[str, float]:
    """Seconds per chip for each stage of one engine batch."""
    import torch

    from paligemma_qgis.core.model.masks import codes_array, paste_masks, usable_objects

    dev = seg.loaded.device
    n = len(chips)
    out: dict[str, float] = {}
    _sync(dev)
    t = time.perf_counter()
    inputs = seg.model_inputs(chips)
    _sync(dev)
    out["inputs"] = (time.perf_counter() - t) / n
    with torch.inference_mode():
        t = time.perf_counter()
        seg.model(**inputs, use_cache=True, logits_to_keep=1)
        _sync(dev)
        out["prefill"] = (time.perf_counter() - t) / n
        t = time.perf_counter()
        texts = seg.generate_text(chips)
        _sync(dev)
        gen = time.perf_counter() - t
    steps = max(len(seg.tokenizer(tx, add_special_tokens=False)["input_ids"]) for tx in texts) + 1
    out["decode"] = max(gen / n - out["prefill"], 0.0)
    out["decode_step_ms"] = 1000 * max(gen - out["prefill"] * n, 0.0) / steps
    t = time.perf_counter()
    parsed = [seg.check_objects(tx) for tx in texts]
    codes = np.concatenate([codes_array(p) for p in parsed])
    out["parse"] = (time.perf_counter() - t) / n
    t = time.perf_counter()
    decoded = seg.codec.decode(codes) if len(codes) else np.zeros((0, 64, 64), np.float32)
    _sync(dev)
    out["codec"] = (time.perf_counter() - t) / n
    t = time.perf_counter()
    k = 0
    for p in parsed:
        u = usable_objects(p)
        paste_masks(u, decoded[k : k + len(u)], chips.shape[1], chips.shape[2])
        k += len(u)
    out["paste"] = (time.perf_counter() - t) / n
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random model on CPU (smoke run)")
    ap.add_argument("--device", default=None, help="auto (default), cuda, cpu, mps")
    ap.add_argument("--dtype", default=None, help="default: bf16 on CUDA, fp32 elsewhere")
    ap.add_argument("--batch-sizes", default=None, help="comma list (default 1,8,32,64,128 GPU; 1,4,8 tiny)")
    ap.add_argument(
        "--chips",
        type=int,
        default=None,
        help="chips per measurement, at least 2 batches (default 64 GPU, 16 tiny)",
    )
    ap.add_argument("--naive-chips", type=int, default=None, help="chips for the naive mode (default 16 / 8)")
    ap.add_argument("--objects", type=int, default=2, help="objects every chip writes (default 2)")
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (default: by GPU name)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--cache", default="dynamic,static", help="comma list of dynamic, static (default both)")
    ap.add_argument(
        "--compile",
        default=None,
        help="comma list of off, on (default off,on on CUDA, off on CPU); on applies to cache static only",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    import make_tiny_paligemma as mk
    import torch
    from synthetic_vae import make_random_vae_npz

    from paligemma_qgis.core.model.codec import MaskCodec
    from paligemma_qgis.core.model.hf_models import (
        LoadedModel,
        describe_device,
        load_paligemma,
        select_device,
        select_dtype,
    )
    from paligemma_qgis.core.model.paligemma import PaliGemmaSegmenter
    from paligemma_qgis.core.model.segmenter import ChipBatch

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_paligemma_"))
    atexit.register(shutil.rmtree, tmp, True)  # the tiny model and VAE are rebuilt every run
    vae = make_random_vae_npz(tmp / "vae-oid.npz", seed=0)
    t0 = time.perf_counter()
    if args.tiny:
        device = select_device(args.device or "cpu")
        loaded = load_paligemma(str(mk.build_tiny_paligemma(tmp / "tiny")), device=device, dtype=args.dtype)
        sizes = [int(b) for b in (args.batch_sizes or "1,4,8").split(",")]
        n_chips, n_naive = args.chips or 16, args.naive_chips or 8
    else:
        device = select_device(args.device)
        dtype = select_dtype(device, args.dtype)
        processor = mk.build_processor(224, gemma_ids=True)
        model = build_full_model(device, dtype)
        loaded = LoadedModel(model, processor, device, dtype, "paligemma2-3b-mix-224 (random)", tmp, 224)
        # MFU needs big batches: a decode step reads all weights whatever the batch size
        sizes = [int(b) for b in (args.batch_sizes or "1,8,32,64,128").split(",")]
        n_chips, n_naive = args.chips or 64, args.naive_chips or 16
    setup_s = time.perf_counter() - t0
    codec = MaskCodec.from_npz(vae, device=loaded.device, allow_custom_vae=True)
    print(f"model {loaded.source} on {describe_device(loaded.device, loaded.dtype)} (setup {setup_s:.1f} s)")

    caches = [c.strip() for c in args.cache.split(",") if c.strip()]
    default_compile = "off,on" if loaded.device.type == "cuda" else "off"
    compiles = [c.strip() == "on" for c in (args.compile or default_compile).split(",") if c.strip()]
    configs = [(c, k) for c in caches for k in compiles if c == "static" or not k]
    if not configs:
        ap.error("no configuration to run: compile on needs cache static")

    def segmenter(bs: int, cache: str = "dynamic", compiled: bool = False) -> PaliGemmaSegmenter:
        return PaliGemmaSegmenter(
            loaded,
            codec,
            batch_size=bs,
            max_objects=args.objects,
            min_objects=args.objects,
            cache=cache,
            compile=compiled,
        )

    def chips_for(bs: int) -> int:
        return max(n_chips, 2 * bs)  # at least two batches: the loop, not one call, is timed

    chips = make_chips(max(n_naive, *(chips_for(b) for b in sizes)), loaded.image_size)
    probe = segmenter(1)
    new_tokens = probe.grammar.max_new_tokens(args.objects)  # EOS included
    prompt_tokens = len(probe._prompt_ids)
    params = count_params(loaded.model)
    flops = flops_per_chip(params, loaded.model.config, prompt_tokens, new_tokens)
    peak = peak_tflops(loaded.device, args.peak_tflops)
    print(
        f"params: vision {params['vision'] / 1e6:.1f} M, text {params['text'] / 1e6:.1f} M, "
        f"lm head {params['head'] / 1e6:.1f} M; tokens/chip: {prompt_tokens} prompt + {new_tokens} generated; "
        f"{flops['total'] / 1e12:.3f} TFLOP/chip; peak {peak or 'n/a'} TFLOP/s"
    )

    def valid(n):
        return np.ones((n, loaded.image_size, loaded.image_size), bool)

    # warm-up (CUDA context, kernels, allocator)
    probe.segment(ChipBatch(np.zeros((2, 0, 1, 1)), chips[:2], valid(2), [0, 1]))
    results: dict[str, object] = {
        "device": describe_device(loaded.device, loaded.dtype),
        "model": loaded.source,
        "objects_per_chip": args.objects,
        "tokens_per_chip": {"prompt": prompt_tokens, "generated": new_tokens},
        "tflop_per_chip": flops["total"] / 1e12,
        "peak_tflops": peak,
    }
    naive_s = bench_naive(probe, chips[:n_naive], new_tokens, args.objects)
    naive_cps = n_naive / naive_s
    print(f"naive (1 generate per chip, processor, default settings): {naive_cps:.2f} chips/s")
    results["naive_chips_per_s"] = naive_cps
    rows = []
    reference: dict[int, list[str]] = {}  # per batch size, texts of the first configuration
    breakdowns: dict[str, dict[str, float]] = {}

    def save() -> None:  # after every line: a run cut short by a time limit keeps what it measured
        results["engine"] = rows
        results["breakdown_ms_per_chip"] = {
            label: {k: (v if k == "decode_step_ms" else 1000 * v) for k, v in parts.items()}
            for label, parts in breakdowns.items()
        }
        if loaded.device.type == "cuda":
            results["max_memory_gib"] = torch.cuda.max_memory_allocated(loaded.device) / 2**30
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

    for cache, compiled in configs:
        label = f"{cache}{'+compile' if compiled else ''}"
        t = time.perf_counter()
        # one segmenter per configuration: torch.compile caches its graphs per object, and
        # dynamo allows only 8 recompilations of a function (then it silently runs eager)
        seg = segmenter(max(sizes), cache, compiled)
        fits = []
        for bs in sizes:
            # warm-up at this batch size (allocator, kernel choice, compilation), not timed
            seg.batch_size = bs
            try:
                seg.segment(ChipBatch(np.zeros((bs, 0, 1, 1)), chips[:bs], valid(bs), list(range(bs))))
                fits.append(bs)
            except torch.cuda.OutOfMemoryError:
                print(f"[{label}] batch {bs}: out of GPU memory, skipped")
                seg.static_decoder.clear()
                torch.cuda.empty_cache()
        _sync(loaded.device)
        print(f"[{label}] warm-up (compilation included) {time.perf_counter() - t:.1f} s")
        if not fits:
            continue
        for bs in fits:
            seg.batch_size = bs
            n = chips_for(bs)
            _sync(loaded.device)
            t = time.perf_counter()
            res = seg.segment(ChipBatch(np.zeros((n, 0, 1, 1)), chips[:n], valid(n), list(range(n))))
            _sync(loaded.device)
            dt = time.perf_counter() - t
            cps = n / dt
            texts = [r.text for r in res]
            # same chips, same batch size: cache/compile must not change a token (bf16 GEMMs
            # of another shape may round differently, so batch sizes are not compared)
            same = texts == reference.setdefault(bs, texts)
            n_obj = sum(len(r.objects) for r in res)
            ok = all(o["status"] == "ok" for r in res for o in r.objects)
            mfu = (cps * flops["total"] / 1e12 / peak) if peak else None
            rows.append(
                {
                    "cache": cache,
                    "compile": compiled,
                    "batch": bs,
                    "chips_per_s": cps,
                    "speedup_vs_naive": cps / naive_cps,
                    "mfu": mfu,
                    "same_text": same,
                }
            )
            mfu_s = f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
            print(
                f"engine {label:16s} batch {bs:3d}: {cps:8.2f} chips/s  x{cps / naive_cps:5.2f} vs naive  "
                f"MFU {mfu_s}  ({n_obj} objects, all parse: {ok}, same text: {same})"
            )
            save()
        best = max(fits)
        seg.batch_size = best
        parts = breakdown(seg, chips[:best])
        breakdowns[label] = parts
        total = sum(v for k, v in parts.items() if k != "decode_step_ms")
        print(f"[{label}] where time goes (batch {best}, ms per chip):")
        for k, v in parts.items():
            if k == "decode_step_ms":
                print(f"  decode step  {v:8.2f} ms per step for the whole batch")
            else:
                print(f"  {k:11s} {1000 * v:8.2f} ms  ({100 * v / total:4.1f}%)")
        save()
        del seg
        if loaded.device.type == "cuda":
            torch.cuda.empty_cache()
    if not rows:
        print("no configuration ran (out of memory at every batch size)")
        return 1
    top = max(rows, key=lambda r: r["chips_per_s"])
    print(
        f"best: {top['cache']}{'+compile' if top['compile'] else ''} batch {top['batch']}: "
        f"{top['chips_per_s']:.2f} chips/s, x{top['speedup_vs_naive']:.2f} vs naive"
        + (f", MFU {100 * top['mfu']:.1f}%" if top["mfu"] is not None else "")
        + f"; all configurations give the same text: {all(r['same_text'] for r in rows)}"
    )
    save()
    if loaded.device.type == "cuda":
        print(f"peak GPU memory {results['max_memory_gib']:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
