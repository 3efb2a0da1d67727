"""PaliGemma's greedy decode over a pre-allocated StaticCache (the ``cache="static"`` option).

A module of its own: it is the one place that drives the model step by step instead of
through transformers' ``generate`` (see ``StaticCacheDecoder.generate`` for why), and the
only user of ``torch.compile`` (the decode step, CUDA graphs on a GPU), so its caches and
its compiled step live and die together here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import StaticCache

# One decode step: (tokens, mask, positions, cache) -> last-position logits.
DecodeStep = Callable[..., "torch.Tensor"]
# (ids so far, scores) -> scores: a transformers LogitsProcessorList (the grammar, or none).
ScoreProcessor = Callable[..., "torch.Tensor"]


class StaticCacheDecoder:
    """generate()'s greedy loop over a StaticCache, token for token the same, optionally compiled.

    ``model``: a PaliGemmaForConditionalGeneration; ``tokenizer``: its tokenizer (EOS and pad
    ids); ``compile``: compile the decode step once, on first use. One StaticCache per
    (batch, length) is kept and reused: fixed addresses for CUDA graphs.
    """

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, compile: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.compile = compile
        self.caches: dict[tuple[int, int], StaticCache] = {}
        self.step: DecodeStep | None = None  # the compiled decode step, once made

    def clear(self) -> None:
        """Drop the caches (out of GPU memory: a smaller batch needs other shapes)."""
        self.caches.clear()

    def close(self) -> None:
        """Drop the caches, the compiled step and the model (the segmenter is closed)."""
        self.caches.clear()
        self.step = None
        self.model = None

    def generate(
        self, inputs: dict[str, torch.Tensor], processors: ScoreProcessor, max_new_tokens: int
    ) -> torch.Tensor:
        """Greedy token ids after the prompt, (chips, steps); finished rows are padded with pad.

        Why not ``generate(cache_implementation="static")``: in transformers 5.24, for a
        compileable cache, GenerationMixin.prepare_inputs_for_generation turns the 2D mask
        into the {"full_attention", "sliding_attention"} dict of PaliGemma 2, and
        PaliGemmaModel.forward then hands that dict to create_causal_mask, which wants a
        tensor (AttributeError: 'dict' object has no attribute 'ndim'). Called directly
        with a 2D mask, the model builds the masks itself from the cache, which is the path
        generate() takes with a dynamic cache. The mask covers the whole cache (future
        slots are hidden by causality), so every decode step has the same shapes.
        """
        import torch

        ids, attn = inputs["input_ids"], inputs["attention_mask"]
        n, length = ids.shape
        total = length + max_new_tokens
        cache = self._static_cache(n, total)
        mask = torch.ones((n, total), dtype=attn.dtype, device=ids.device)
        mask[:, :length] = attn
        # generate(): positions from the mask (left padding), PaliGemma counts from 1
        positions = (attn.long().cumsum(-1) - 1).masked_fill(attn == 0, 0) + 1
        out = self.model(
            input_ids=ids,
            pixel_values=inputs["pixel_values"],
            token_type_ids=inputs["token_type_ids"],
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        del out
        seq = torch.empty((n, total), dtype=ids.dtype, device=ids.device)
        seq[:, :length] = ids
        eos, pad = int(self.tokenizer.eos_token_id), int(self.tokenizer.pad_token_id)
        unfinished = torch.ones(n, dtype=torch.bool, device=ids.device)
        pos = positions[:, -1:]
        step = self._decode_step()
        for t in range(max_new_tokens):
            scores = processors(seq[:, : length + t], logits)
            tokens = torch.where(unfinished, scores.argmax(-1), pad)
            seq[:, length + t] = tokens
            unfinished &= tokens != eos
            if t + 1 == max_new_tokens or not bool(unfinished.any()):
                return seq[:, length : length + t + 1]
            pos = pos + 1
            logits = step(tokens[:, None], mask, pos, cache).to(copy=True, dtype=torch.float32)
        return seq[:, length:length]  # max_new_tokens >= 1: not reached

    def _static_cache(self, batch: int, length: int) -> StaticCache:
        """One StaticCache per (batch, length), reused: fixed addresses for CUDA graphs."""
        from transformers import StaticCache

        key = (batch, length)
        cache = self.caches.get(key)
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=length)
            self.caches[key] = cache
        else:
            cache.reset()
        return cache

    def _forward_step(
        self, tokens: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: StaticCache
    ) -> torch.Tensor:
        """One decode step: last-position logits for one new token per row."""
        out = self.model(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=pos,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _decode_step(self) -> DecodeStep:
        """The decode step, compiled once when asked (CUDA: CUDA graphs via reduce-overhead)."""
        if not self.compile:
            return self._forward_step
        if self.step is None:
            import torch

            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            compiled = torch.compile(self._forward_step, mode=mode, fullgraph=False)

            def step(*args: Any) -> torch.Tensor:
                if self.device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()
                return compiled(*args)

            self.step = step
        return self.step
