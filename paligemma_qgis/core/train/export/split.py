"""Train/valid split by spatial blocks (no leakage between neighbours) and the empty-chip policy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import rules
from ...errors import InputError

EMPTY_POLICIES = rules.EMPTY_POLICIES


def spatial_blocks(windows: Sequence[tuple[int, int, int, int]], block_px: int) -> list[tuple[int, int]]:
    """Block id of each chip (row_off, col_off, height, width): the block holding its centre."""
    block_px = max(int(block_px), 1)
    return [((r + h // 2) // block_px, (c + w // 2) // block_px) for r, c, h, w in windows]


def split_blocks(blocks: Sequence[tuple[int, int]], valid_fraction: float, seed: int) -> list[str]:
    """Assign whole blocks to "valid" (in seeded random order) until the fraction is reached.

    Neighbouring chips share a block and hence a split, so validation measures how the model
    does on ground it has not seen, not on the overlap of its training chips.
    """
    n = len(blocks)
    splits = ["train"] * n
    if n == 0 or valid_fraction <= 0:
        return splits
    unique = sorted(set(blocks))
    if len(unique) < 2:
        return splits
    order = np.random.default_rng(seed).permutation(len(unique))
    members: dict[tuple[int, int], list[int]] = {}
    for i, b in enumerate(blocks):
        members.setdefault(b, []).append(i)
    target = max(1, int(round(valid_fraction * n)))
    taken = 0
    for k in order[:-1]:  # never every block: keep something to train on
        if taken >= target:
            break
        for i in members[unique[k]]:
            splits[i] = "valid"
            taken += 1
    return splits


def exclude_overlaps(windows: Sequence[tuple[int, int, int, int]], splits: list[str]) -> list[str]:
    """Train chips whose pixels overlap a valid chip (chip overlap > 0) become "excluded"."""
    valid = [w for w, s in zip(windows, splits, strict=False) if s == "valid"]
    if not valid:
        return splits
    v = np.array(valid)
    out = list(splits)
    for i, ((r, c, h, w), s) in enumerate(zip(windows, splits, strict=False)):
        if s != "train":
            continue
        hit = (v[:, 0] < r + h) & (r < v[:, 0] + v[:, 2]) & (v[:, 1] < c + w) & (c < v[:, 1] + v[:, 3])
        if hit.any():
            out[i] = "excluded"
    return out


def apply_empty_policy(
    empty: Sequence[bool], splits: Sequence[str], policy: str, cap: float, seed: int
) -> list[bool]:
    """Which chips to write, given which have no water.

    keep: all; drop: none of the empty ones; cap: empty chips make at most ``cap`` of each
    split's written chips (a seeded random choice), so the model still learns to answer
    "no water" without that answer dominating.
    """
    if policy not in EMPTY_POLICIES:
        raise InputError(
            "option_choice", field="empty_policy", value=repr(policy), choices=", ".join(EMPTY_POLICIES)
        )
    keep = [True] * len(empty)
    if policy == "keep":
        return keep
    rng = np.random.default_rng(seed + 1)
    for split in sorted(set(splits)):
        idx_empty = [i for i, (e, s) in enumerate(zip(empty, splits, strict=False)) if e and s == split]
        n_full = sum(1 for e, s in zip(empty, splits, strict=False) if not e and s == split)
        if policy == "drop":
            allowed = 0
        else:
            cap = min(max(cap, 0.0), 0.999)
            allowed = int(np.floor(cap * n_full / (1.0 - cap) + 1e-9))
        if len(idx_empty) > allowed:
            chosen = set(rng.choice(idx_empty, size=allowed, replace=False).tolist()) if allowed else set()
            for i in idx_empty:
                keep[i] = i in chosen
    return keep
