"""The PaliGemma segmenter: RGB chips -> "segment water" -> <loc>/<seg> text -> chip masks.

Per batch of chips: one batched greedy decode (constrained to valid segmentation text by
default, see constrained.py; transformers' ``generate`` by default, or the engine's own loop
over a static KV cache, optionally with a compiled decode step: options cache / compile), parse every chip's text (tokens.parse_segmentation),
decode the accepted objects of the whole batch with the mask codec in one call on the
model's device, and paste each mask into its chip at the chip's own size. The raw text
and the per-object verdicts go back with every ChipResult for the audit trail.

Chips of another size than the model's (224/448/896) are resized by the processor; the
loc grid is relative to the chip, so pasting at chip size undoes that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import rules
from ..errors import InputError
from .segmenter import ChipBatch, ChipResult, EngineInfo, RasterBands
from .static_decode import StaticCacheDecoder
from .text_decoder import ChipTextDecoder
from .tokens import parse_classes

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

    from .codec import MaskCodec
    from .hf_models import LoadedModel
    from .tokens import SegObject

log = logging.getLogger(__name__)

# CPU batch, measured (scripts/bench_cpu_batch.py, docs/BENCHMARKS.md): the chip loop runs
# 1.5x faster at 8 than at 4 and only 1.07x more at 16, which doubles the memory of a batch
# (about 1.9 GB at 8 for PaliGemma 2 3B in float32) and the work between cancel checks.
CPU_BATCH = 8
DEFAULT_MAX_OBJECTS = 8  # per chip; the token budget follows (about 23 tokens per object)
MAX_AUTO_BATCH = 64  # beyond this, per-chip gains are small and cancel/progress get coarse
CACHE_MODES = rules.CACHE_MODES


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or MPS's RuntimeError("MPS backend out of memory ...")."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def chip_memory_bytes(config: PretrainedConfig, prompt_tokens: int, new_tokens: int, itemsize: int) -> int:
    """Rough GPU bytes one chip needs during generation, on top of the weights.

    KV cache (every layer, key and value) for the whole sequence, plus the largest prefill
    activations: the MLP's intermediate, and eager attention's float32 score matrix (Gemma 2
    soft-caps logits, so it runs eager attention). Doubled for the allocator's slack and
    temporaries; the OOM back-off in segment() covers what this misses.
    """
    tc = getattr(config, "text_config", config)
    vc = getattr(config, "vision_config", None)
    layers, kv_heads = int(tc.num_hidden_layers), int(tc.num_key_value_heads)
    head_dim = int(getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads)
    seq = prompt_tokens + new_tokens
    kv = 2 * layers * kv_heads * head_dim * seq * itemsize
    mlp = prompt_tokens * int(tc.intermediate_size) * 2 * itemsize
    scores = int(tc.num_attention_heads) * prompt_tokens * prompt_tokens * 4 * 2
    vision = 0
    if vc is not None:
        n_img = (int(vc.image_size) // int(vc.patch_size)) ** 2
        vision = n_img * (int(vc.intermediate_size) * 2 + int(vc.num_attention_heads) * n_img * 4) * itemsize
    logits = int(tc.vocab_size) * 4 * 2  # last-position logits in float32, and the grammar's mask
    return 2 * (kv + max(mlp + scores, vision) + logits)


def auto_batch_size(free_bytes: int, per_chip_bytes: int, fraction: float = 0.7) -> int:
    """Chips per batch that fit in ``fraction`` of the free memory, 1 to MAX_AUTO_BATCH."""
    fits = int(fraction * free_bytes) // max(1, int(per_chip_bytes))
    return max(1, min(MAX_AUTO_BATCH, fits))


def check_decode_options(cache: str, compile: bool, max_objects: int | None = None) -> None:
    """Refuse bad decoding options before the (slow) model load."""
    if cache not in CACHE_MODES:
        raise InputError("option_choice", field="cache", value=repr(cache), choices=", ".join(CACHE_MODES))
    if compile and cache != "static":
        raise InputError("compile_needs_static", field="compile")
    if max_objects is not None and int(max_objects) < 1:
        raise InputError("option_range", field="max_objects", value=str(max_objects), bound="at least 1")


class PaliGemmaSegmenter:
    """Segmenter protocol implementation over a loaded PaliGemma and the mask codec."""

    name = "paligemma"

    def __init__(
        self,
        loaded: LoadedModel,
        codec: MaskCodec,
        *,
        classes: str | Sequence[str] | None = None,
        batch_size: int | None = None,
        constrained: bool = True,
        max_new_tokens: int | None = None,
        max_objects: int | None = None,
        cache: str = "dynamic",
        compile: bool = False,
        min_objects: int = 0,
    ) -> None:
        from .constrained import SegmentationGrammar, build_prompt

        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.codec = codec
        self.chip_size = int(loaded.image_size)
        self.classes = parse_classes(classes)
        self.decoder = ChipTextDecoder(codec, self.classes)
        self.prompt = build_prompt(self.classes)
        self.constrained = bool(constrained)
        self.max_objects = int(max_objects or DEFAULT_MAX_OBJECTS)
        self.min_objects = int(min_objects)  # benchmarks only: a known output length
        if batch_size is not None and int(batch_size) < 1:
            raise InputError("option_range", field="batch_size", value=str(batch_size), bound="at least 1")
        self.grammar = SegmentationGrammar(self.tokenizer, self.classes)
        if max_new_tokens is not None and int(max_new_tokens) < 1:
            raise InputError(
                "option_range", field="max_new_tokens", value=str(max_new_tokens), bound="at least 1"
            )
        self.max_new_tokens = int(max_new_tokens or self.grammar.max_new_tokens(self.max_objects))
        self._prompt_ids = self._tokenize_prompt()
        self.batch_size = int(batch_size or self._default_batch_size())
        # "dynamic": transformers' generate() with its default cache. "static": our own greedy
        # loop over a pre-allocated StaticCache (see static_decode for why not generate()),
        # which fixes every decode-step shape, so the step can be compiled (CUDA graphs on GPU).
        check_decode_options(cache, compile, max_objects)
        self.cache = cache
        self.compile = bool(compile)
        self.static_decoder = StaticCacheDecoder(self.model, self.tokenizer, loaded.device, self.compile)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_options(
        cls,
        model: str | None = None,
        vae: str | None = None,
        allow_custom_vae: bool = False,
        device: str | None = None,
        batch_size: int | None = None,
        classes: str | Sequence[str] | None = None,
        constrained: bool | None = True,
        max_new_tokens: int | None = None,
        *,
        dtype: str | None = None,
        offline: bool | None = None,
        max_objects: int | None = None,
        cache: str = "dynamic",
        compile: bool = False,
    ) -> PaliGemmaSegmenter:
        """Build from flat front-end options; the small VAE is checked before the big model loads."""
        from .codec import MaskCodec
        from .hf_models import DEFAULT_MODEL, load_paligemma, select_device
        from .weights import find_vae

        dev = select_device(device)
        classes_t = parse_classes(classes)  # bad input fails before any loading
        check_decode_options(cache, compile, max_objects)
        codec = MaskCodec.from_npz(find_vae(vae), device=dev, allow_custom_vae=bool(allow_custom_vae))
        loaded = load_paligemma(model or DEFAULT_MODEL, device=dev, dtype=dtype, offline=offline)
        return cls(
            loaded,
            codec,
            classes=classes_t,
            batch_size=batch_size,
            constrained=True if constrained is None else bool(constrained),
            max_new_tokens=max_new_tokens,
            max_objects=max_objects,
            cache=cache,
            compile=compile,
        )

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name=self.name,
            chip_size=self.chip_size,
            needs_rgb=True,
            needs_sample=False,  # ``prepare`` fits nothing; the RGB stretch is the pipeline's
            text=True,
            batch_size=self.batch_size,
            device=self.device,
        )

    @property
    def device(self) -> str:
        """Where the model runs, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3), bfloat16' (users ask)."""
        from .hf_models import describe_device

        return describe_device(self.loaded.device, self.loaded.dtype)

    def describe(self) -> dict[str, Any]:
        """For the run summary and logs: which model, where it runs, how it decodes."""
        return {
            "model": self.loaded.source,
            "device": self.device,
            "prompt": self.prompt,
            "decoding": "constrained" if self.constrained else "free",
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "cache": self.cache + (" (compiled decode step)" if self.compile else ""),
        }

    def close(self) -> None:
        """Drop the model and free GPU memory (a worker may live on after a run)."""
        import torch

        self.model = None
        self.loaded.model = None
        self.static_decoder.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _default_batch_size(self) -> int:
        """CUDA: what the free GPU memory holds (at most MAX_AUTO_BATCH); elsewhere CPU_BATCH.

        On a GPU a decode step costs about the same for 1 or 64 chips (it reads all the
        weights either way), so the batch should be as big as memory allows. A batch that
        still runs out of memory is halved and retried (segment).
        """
        import torch

        if self.loaded.device.type != "cuda":
            return CPU_BATCH
        free, _total = torch.cuda.mem_get_info(self.loaded.device)
        per_chip = chip_memory_bytes(
            self.model.config, len(self._prompt_ids), self.max_new_tokens, self.loaded.dtype.itemsize
        )
        return auto_batch_size(free, per_chip)

    # ------------------------------------------------------------------ protocol
    def bands_needed(self, bands: RasterBands) -> list[int]:
        """None: the model sees ChipBatch.rgb."""
        return []

    def prepare(self, sample: ChipBatch) -> None:
        """Nothing to fit per scene."""

    def segment(self, batch: ChipBatch) -> list[ChipResult]:
        rgb = np.asarray(batch.rgb)
        return self.decoder.decode(self.generate_texts(batch), rgb.shape[1], rgb.shape[2])

    def generate_texts(self, batch: ChipBatch) -> list[str | None]:
        """The model's text for each chip (None for a chip without a valid pixel: not asked)."""
        rgb = np.asarray(batch.rgb)
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"ChipBatch.rgb must be (B, H, W, 3), got {rgb.shape}")
        n, height, width = rgb.shape[:3]
        valid = (
            np.asarray(batch.valid, bool) if batch.valid is not None else np.ones((n, height, width), bool)
        )
        todo = [i for i in range(n) if valid[i].any()]
        texts: list[str | None] = [None] * n
        start = 0
        while start < len(todo):
            idx = todo[start : start + self.batch_size]
            try:
                generated = self.generate_text(rgb[idx])
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                self._shrink_batch(len(idx), exc)
                continue
            for i, text in zip(idx, generated, strict=True):
                texts[i] = text
            start += len(idx)
        return texts

    def _shrink_batch(self, tried: int, exc: BaseException) -> None:
        """Out of GPU memory: halve the batch for this and later calls; at 1 chip, give up."""
        import torch

        self.static_decoder.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        elif self.loaded.device.type == "mps":
            torch.mps.empty_cache()
        if tried <= 1:
            raise InputError(
                "gpu_memory",
                field="device",
                when="with one chip per batch",
                device=self.device,
                detail=str(exc)[:300],
            ) from exc
        self.batch_size = max(1, tried // 2)
        log.warning("out of GPU memory with %d chips per batch; retrying with %d", tried, self.batch_size)

    # ------------------------------------------------------------------ steps
    def _tokenize_prompt(self) -> list[int]:
        """The prompt ids the processor would build: <image>*N <bos> prompt \\n."""
        proc = self.processor
        text = proc.tokenizer.bos_token + self.prompt + "\n"
        ids = proc.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [proc.image_token_id] * proc.image_seq_length + list(ids)

    def _fast_pixels(self, rgb: np.ndarray) -> torch.Tensor | None:
        """Chips already at model size: (x/255 - mean)/std in torch, no PIL round trip.

        Same result as the processor when it would not resize; None when it would.
        """
        import torch

        ip = self.processor.image_processor
        size = getattr(ip, "size", None) or {}
        if (size.get("height"), size.get("width")) != (rgb.shape[1], rgb.shape[2]):
            return None
        if not (getattr(ip, "do_rescale", True) and getattr(ip, "do_normalize", True)):
            return None
        scale = float(getattr(ip, "rescale_factor", 1 / 255))
        mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(ip.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float()
        return (x * scale - mean) / std

    def model_inputs(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        """Processor-equivalent inputs for a stack of uint8 RGB chips, on the model's device."""
        import torch

        pixels = self._fast_pixels(rgb)
        if pixels is None:
            enc = self.processor(
                images=[np.ascontiguousarray(c) for c in rgb],
                text=["<image>" + self.prompt] * len(rgb),
                return_tensors="pt",
                padding="longest",
            )
            inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")}
        else:
            ids = torch.tensor([self._prompt_ids] * len(rgb), dtype=torch.long)
            inputs = {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "token_type_ids": torch.zeros_like(ids),
                "pixel_values": pixels,
            }
        dev, dt = self.loaded.device, self.loaded.dtype
        out = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
        out["pixel_values"] = out["pixel_values"].to(dt)
        return out

    def generate_text(self, rgb: np.ndarray) -> list[str]:
        """Raw model text (the generated suffix, special tokens removed) for each chip."""
        return self.tokenizer.batch_decode(
            self.generate_ids(rgb), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def generate_ids(self, rgb: np.ndarray) -> torch.Tensor:
        """Greedy token ids after the prompt, (chips, steps); finished rows are padded with pad."""
        import torch
        from transformers import LogitsProcessorList

        if self.model is None:
            raise RuntimeError("segmenter was closed")
        inputs = self.model_inputs(rgb)
        prompt_len = int(inputs["input_ids"].shape[1])
        processors = LogitsProcessorList()
        if self.constrained:
            processors.append(
                self.grammar.processor(
                    max_new_tokens=self.max_new_tokens,
                    max_objects=self.max_objects,
                    min_objects=self.min_objects,
                    prompt_length=prompt_len,
                )
            )
        with torch.inference_mode():
            if self.cache == "static":
                return self.static_decoder.generate(inputs, processors, self.max_new_tokens)
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=processors,
            )
        return out[:, prompt_len:]

    def check_objects(self, text: str) -> list[SegObject]:
        """Parse one chip's text; objects with a label that was not asked for are rejected."""
        return self.decoder.check_objects(text)
