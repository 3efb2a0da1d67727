"""Constrained decoding: PaliGemma may only write well-formed segmentation text.

Grammar of the generated suffix (after the prompt), per sequence:

    output  := EOS | object (SEP object)* [EOS]
    object  := <locY1> <locX1> <locY2> <locX2> <seg>*16 " " label
    SEP     := " ; "        (tokenised together with the label, see below)

with y2 > y1 and x2 > x1, and label one of the allowed classes. This is exactly what
big_vision accepts; unconstrained models also write empty boxes, 17 seg tokens, cut-off
objects and free text (see shared data/paligemma_reference), all of which get rejected
later and lose the object. With the grammar every object the model starts is usable.

How it works: a small state machine per batch row, advanced with the tokens generated
after the prompt (Python, O(batch) per step), and a vectorised mask per step: one row of a
precomputed (states x vocab) table per sequence, plus a range mask over the 1024 loc
tokens for the box order. The label and separator are matched as token *sequences*
(a trie), tokenised the way the tokenizer itself tokenises " water" and " water ; ", so
the grammar holds for any tokenizer (Gemma's or the tiny test one).

It also keeps a token budget: an object is only started if it can be finished within
``max_new_tokens`` (and ``max_objects``), so a length cut never leaves half an object.

Greedy decoding or sampling only (rows are not reordered); not for beam search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

N_LOC = 1024
N_SEG = 128
SEG_PER_OBJECT = 16
LOC_PER_OBJECT = 4
_BOX_AND_SEG = LOC_PER_OBJECT + SEG_PER_OBJECT

# Per-row phases of the state machine.
START, LOC0, SEG0, TAIL, DONE = 0, 1, 1 + LOC_PER_OBJECT, 1 + _BOX_AND_SEG, 2 + _BOX_AND_SEG
_EOS, _LOC = -1, -2  # trie edge markers: end of output / start of the next object


@dataclass
class _Node:
    children: dict[int, int] = field(default_factory=dict)  # token id (or _EOS/_LOC) -> node
    eos_below: bool = False  # some path from here ends with EOS
    cont_len: int = 0  # most text tokens from here to the next object's first loc token (-1: none)


def build_prompt(classes: Sequence[str]) -> str:
    """'segment water', or 'segment water ; river' for several classes (big_vision style)."""
    return "segment " + " ; ".join(classes)


class SegmentationGrammar:
    """Token-level tables of the segmentation grammar for one tokenizer and set of classes.

    Build once per model; ``processor()`` makes the light per-generate-call LogitsProcessor.
    """

    def __init__(self, tokenizer, classes: Sequence[str] = ("water",), *, separator: str = " ; ") -> None:
        if not classes:
            raise ValueError("at least one class label is needed")
        self.classes = tuple(c.strip() for c in classes)
        if any(not c or ";" in c for c in self.classes):
            raise ValueError(f"class labels must be non-empty and contain no ';': {classes!r}")
        conv = tokenizer.convert_tokens_to_ids
        self.loc_ids = [conv(f"<loc{i:04d}>") for i in range(N_LOC)]
        self.seg_ids = [conv(f"<seg{i:03d}>") for i in range(N_SEG)]
        unk = tokenizer.unk_token_id
        if any(i is None or i == unk for i in self.loc_ids + self.seg_ids):
            raise ValueError("the tokenizer lacks PaliGemma's <locNNNN>/<segNNN> tokens")
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self.eos_id
        self.loc_value = {tok: v for v, tok in enumerate(self.loc_ids)}
        self.seg_set = frozenset(self.seg_ids)
        self._loc_contiguous = self.loc_ids == list(range(self.loc_ids[0], self.loc_ids[0] + N_LOC))

        def encode(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        # The suffix after the 16 seg tokens: " label" then EOS, or " label ; " then a loc token.
        self.end_seqs = {c: encode(" " + c) for c in self.classes}
        self.cont_seqs = {c: encode(" " + c + separator.rstrip(" ") + " ") for c in self.classes}
        self.nodes: list[_Node] = [_Node()]
        for c in self.classes:
            self._insert(self.end_seqs[c] + [_EOS])
            self._insert(self.cont_seqs[c] + [_LOC])
        self._annotate(0)
        self.min_end_len = min(len(s) for s in self.end_seqs.values())
        self.max_end_len = max(len(s) for s in self.end_seqs.values())
        self.max_cont_len = max(len(s) for s in self.cont_seqs.values())
        self._tables: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- trie
    def _insert(self, seq: list[int]) -> None:
        node = 0
        for tok in seq:
            nxt = self.nodes[node].children.get(tok)
            if nxt is None:
                nxt = len(self.nodes)
                self.nodes.append(_Node())
                self.nodes[node].children[tok] = nxt
            node = nxt

    def _annotate(self, n: int) -> tuple[bool, int]:
        node = self.nodes[n]
        eos, cont = False, -1
        for tok, child in node.children.items():
            if tok == _EOS:
                eos = True
            elif tok == _LOC:
                cont = max(cont, 0)
            else:
                e, c = self._annotate(child)
                eos = eos or e
                if c >= 0:
                    cont = max(cont, c + 1)
        node.eos_below, node.cont_len = eos, cont
        return eos, cont

    def max_new_tokens(self, max_objects: int) -> int:
        """Token budget for up to max_objects objects plus EOS."""
        max_objects = max(1, int(max_objects))
        return (_BOX_AND_SEG + self.max_cont_len) * (max_objects - 1) + _BOX_AND_SEG + self.max_end_len + 1

    # -- mask tables
    def _mask_tables(self, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, vocab) bool table and the loc ids.

        Rows: 0 nothing (loc phases; loc tokens come from the range mask), 1 seg tokens,
        2 EOS/pad (finished), 3 EOS; per trie node n: 4+3n any continuation, 5+3n only
        what can still end with EOS, 6+3n any continuation but EOS.
        """
        key = (vocab, device)
        if key not in self._tables:
            table = torch.zeros((4 + 3 * len(self.nodes), vocab), dtype=torch.bool)
            table[1, self.seg_ids] = True
            table[2, [self.eos_id, self.pad_id]] = True
            table[3, self.eos_id] = True
            for n, node in enumerate(self.nodes):
                for tok, child in node.children.items():
                    if tok == _LOC:
                        continue  # loc tokens come from the per-row range mask
                    tid = self.eos_id if tok == _EOS else tok
                    table[4 + 3 * n, tid] = True
                    if tok == _EOS or self.nodes[child].eos_below:
                        table[5 + 3 * n, tid] = True
                    if tok != _EOS:
                        table[6 + 3 * n, tid] = True
            self._tables[key] = (table.to(device), torch.tensor(self.loc_ids, device=device))
        return self._tables[key]

    def processor(
        self,
        *,
        max_new_tokens: int,
        max_objects: int = 1_000_000,
        min_objects: int = 0,
        prompt_length: int | None = None,
    ) -> ConstrainedSegmentationProcessor:
        return ConstrainedSegmentationProcessor(
            self,
            max_new_tokens=max_new_tokens,
            max_objects=max_objects,
            min_objects=min_objects,
            prompt_length=prompt_length,
        )


class _Row:
    __slots__ = ("phase", "node", "y1", "x1", "objects")

    def __init__(self) -> None:
        self.phase, self.node, self.y1, self.x1, self.objects = START, 0, 0, 0, 0


class ConstrainedSegmentationProcessor(LogitsProcessor):
    """LogitsProcessor enforcing SegmentationGrammar; one instance per generate() call.

    prompt_length: columns of input_ids before generation (the padded prompt length, the
    same for every row with left padding). None: taken from the first call, which
    transformers makes before any token is generated.
    min_objects: EOS is withheld until that many objects exist (while the budget allows
    another one); for benchmarks that need a known output length. Default 0.
    """

    def __init__(
        self,
        grammar: SegmentationGrammar,
        *,
        max_new_tokens: int,
        max_objects: int = 1_000_000,
        min_objects: int = 0,
        prompt_length: int | None = None,
    ) -> None:
        self.g = grammar
        self.min_objects = int(min_objects)
        self.budget = int(max_new_tokens)
        self.max_objects = int(max_objects)
        self.prompt_length = prompt_length
        self.rows: list[_Row] = []
        self.consumed = 0

    # -- state
    def _advance(self, row: _Row, tok: int) -> None:
        g = self.g
        p = row.phase
        if p == DONE:
            return
        loc = g.loc_value.get(tok)
        if p in (START, TAIL) and loc is not None and (p == START or _LOC in g.nodes[row.node].children):
            row.phase, row.y1, row.objects = LOC0 + 1, loc, row.objects + 1
        elif p == START:
            row.phase = DONE  # EOS (or anything outside the grammar: stop constraining)
        elif LOC0 <= p < SEG0:
            if loc is None:
                row.phase = DONE
                return
            if p == LOC0 + 1:
                row.x1 = loc
            row.phase = p + 1
        elif SEG0 <= p < TAIL:
            row.phase = p + 1 if tok in g.seg_set else DONE
            row.node = 0
        else:  # TAIL
            child = g.nodes[row.node].children.get(tok)
            if child is None:
                row.phase = DONE  # EOS or a token outside the grammar
            else:
                row.node = child

    def _sync(self, input_ids: torch.Tensor) -> None:
        if self.prompt_length is None:
            self.prompt_length = int(input_ids.shape[1])
        generated = int(input_ids.shape[1]) - self.prompt_length
        if generated < 0:
            raise ValueError("input_ids shorter than the prompt: one processor per generate() call")
        if len(self.rows) != input_ids.shape[0] or generated < self.consumed:
            self.rows = [_Row() for _ in range(input_ids.shape[0])]
            self.consumed = 0
        if generated > self.consumed:
            new = input_ids[:, self.prompt_length + self.consumed :].tolist()
            for row, toks in zip(self.rows, new, strict=True):
                for tok in toks:
                    self._advance(row, tok)
            self.consumed = generated

    # -- masking
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._sync(input_ids)
        g = self.g
        # tokens still allowed, this one included
        remaining = self.budget - self.consumed
        # an object needs room for the longest label: the model picks the label only at its end
        new_object = _BOX_AND_SEG + g.max_end_len
        plan = []  # per row: table row, loc low, loc high (high < low: no loc token)
        for row in self.rows:
            p = row.phase
            can_more = row.objects < self.max_objects
            if p == START:
                ok = can_more and remaining >= new_object
                plan.append(((0 if self.min_objects > 0 else 3), 0, N_LOC - 2) if ok else (3, 1, 0))
            elif p == LOC0 + 1:  # x1
                plan.append((0, 0, N_LOC - 2))
            elif p == LOC0 + 2:  # y2 > y1
                plan.append((0, row.y1 + 1, N_LOC - 1))
            elif p == LOC0 + 3:  # x2 > x1
                plan.append((0, row.x1 + 1, N_LOC - 1))
            elif SEG0 <= p < TAIL:
                plan.append((1, 1, 0))
            elif p == TAIL:
                node = g.nodes[row.node]
                cont_ok = can_more and node.cont_len >= 0 and remaining >= node.cont_len + new_object
                allows_loc = cont_ok and _LOC in node.children
                lo, hi = (0, N_LOC - 2) if allows_loc else (1, 0)
                kind = (2 if row.objects < self.min_objects else 0) if cont_ok else 1
                plan.append((4 + 3 * row.node + kind, lo, hi))
            else:
                plan.append((2, 1, 0))
        table, loc_ids = g._mask_tables(scores.shape[-1], scores.device)
        spec = torch.tensor(plan, dtype=torch.long).to(scores.device, non_blocking=True)
        allowed = table.index_select(0, spec[:, 0])
        span = torch.arange(N_LOC, device=scores.device)
        loc_ok = (span >= spec[:, 1:2]) & (span <= spec[:, 2:3])
        if g._loc_contiguous:
            start = g.loc_ids[0]
            allowed[:, start : start + N_LOC] |= loc_ok
        else:
            allowed[:, loc_ids] |= loc_ok
        return scores.masked_fill(~allowed, float("-inf"))  # type: ignore[return-value]
