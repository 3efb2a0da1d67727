"""PaliGemma segmentation text <-> objects (box, 16 mask codes, label).

One object is ``<locY1><locX1><locY2><locX2>`` (0..1023 over the whole chip), then 16
``<segNNN>`` codes (0..127, absent for detection) and `` label``; objects are joined by
`` ; ``. Real models also write empty strings, cut-off objects and 17 seg tokens, so the
parser never raises: every object comes back either accepted or with the reason it was
rejected, which the pipeline keeps for the audit trail.

Pure Python on purpose: importing this module must not pull in numpy or torch.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..rules import DEFAULT_CLASSES

LOC_MAX = 1023
SEG_MAX = 127
NUM_LOC = 4
NUM_SEG = 16

# One lexer pass: known token shapes first, then any other <...> special token, the
# object separator, plain text, and a lone "<" or ">".
_LEXER = re.compile(
    r"<loc(?P<loc>\d+)>|<seg(?P<seg>\d+)>|(?P<special><[^<>\s]*>)|(?P<sep>;)|(?P<text>[^<>;]+)|(?P<stray>[<>])"
)
_EOS = re.compile(r"<eos>|</s>")
_LEADING_SPECIALS = re.compile(r"^(?:\s*(?:<image>|<bos>|<pad>))+")
# A prompt echo: a first line without tokens that ends in a newline (the processor's prefix).
_PREFIX_ECHO = re.compile(r"^[^<\n;]*\n")
_PARTIAL_TOKEN = re.compile(r"<[A-Za-z]*\d*$")  # generation stopped inside a token
_TASK_WORD = re.compile(r"^\s*(?:segment|detect)\b")


@dataclass(frozen=True)
class SegObject:
    """One parsed or to-be-written object.

    box:    (y1, x1, y2, x2) on the 0..1023 loc grid over the whole chip. For rejected
            objects whatever was parsed, zero-padded: never use it unless ``accepted``.
    codes:  16 mask codes 0..127, or None for detection-only objects. Rejected objects keep
            what was parsed (e.g. 17 codes) for the audit.
    label:  class name, may hold several words ("water body").
    status: "ok" or the reason the object was rejected.
    """

    box: tuple[int, int, int, int]
    codes: tuple[int, ...] | None
    label: str
    status: str = "ok"

    @property
    def accepted(self) -> bool:
        return self.status == "ok"


@dataclass
class _Tok:
    kind: str  # loc, seg, bad, malformed, special, sep, text, stray
    value: int | None
    raw: str


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _LEXER.finditer(text):
        kind = m.lastgroup or "text"
        raw = m.group(0)
        value: int | None = None
        if kind in ("loc", "seg"):
            digits = m.group(kind)
            width = 4 if kind == "loc" else 3
            limit = LOC_MAX if kind == "loc" else SEG_MAX
            if len(digits) != width:  # a token the Gemma vocabulary does not have
                kind = "malformed"  # (and no int() of a huge digit string)
            else:
                value = int(digits)
                if value > limit:
                    kind = "bad"
        toks.append(_Tok(kind, value, raw))
    return toks


def _clean(text: str) -> str:
    """Drop what is not model output: everything after EOS, padding, a prompt echo."""
    m = _EOS.search(text)
    if m:
        text = text[: m.start()]
    text = text.replace("<pad>", "")
    text = _LEADING_SPECIALS.sub("", text).lstrip()
    echo = _PREFIX_ECHO.match(text)
    if echo and (text[echo.end() :].strip() or _TASK_WORD.match(text)):
        text = text[echo.end() :]
    text = _PARTIAL_TOKEN.sub("", text.strip())
    return text.strip()


def _short(raw: str, limit: int = 24) -> str:
    raw = " ".join(raw.split())
    return repr(raw if len(raw) <= limit else raw[: limit - 3] + "...")


def _split_objects(group: list[_Tok]) -> list[list[_Tok]]:
    """Split one ';'-separated group where a box starts right after codes or a label.

    Models sometimes drop the separator; the second object is still well formed.
    """
    parts: list[list[_Tok]] = [[]]
    for tok in group:
        cur = parts[-1]
        if tok.kind == "loc":
            meaningful = [t for t in cur if t.raw.strip()]
            if meaningful and meaningful[-1].kind in ("seg", "text") and any(t.kind == "loc" for t in cur):
                parts.append([tok])  # the current part already has its own box
                continue
        cur.append(tok)
    return parts


def _parse_one(toks: list[_Tok], at_end: bool) -> SegObject:
    toks = [t for t in toks if not (t.kind == "text" and not t.raw.strip())] if toks else []
    i = 0
    pre = []
    while i < len(toks) and toks[i].kind in ("text", "stray"):
        pre.append(toks[i].raw)
        i += 1
    locs: list[int] = []
    while i < len(toks) and toks[i].kind == "loc":
        locs.append(toks[i].value or 0)
        i += 1
    segs: list[int] = []
    while i < len(toks) and toks[i].kind == "seg":
        segs.append(toks[i].value or 0)
        i += 1
    label_parts = []
    while i < len(toks) and toks[i].kind == "text":
        label_parts.append(toks[i].raw)
        i += 1
    rest = toks[i:]
    label = " ".join(" ".join(label_parts).split())
    box = tuple((locs + [0, 0, 0, 0])[:NUM_LOC])
    codes = tuple(segs) if segs else None

    def rejected(reason: str) -> SegObject:
        return SegObject(box, codes, label, reason)  # type: ignore[arg-type]

    if not (locs or segs or rest):
        return rejected(f"garbage {_short(''.join(pre))}")
    bad = next((t for t in toks if t.kind in ("bad", "malformed")), None)
    if bad is not None:
        what = "out-of-range" if bad.kind == "bad" else "malformed token"
        return rejected(f"{what} {bad.raw[:16]}")
    if pre:
        return rejected(f"garbage before box {_short(''.join(pre))}")
    if (
        at_end
        and not rest
        and not label
        and len(locs) <= NUM_LOC
        and len(segs) <= NUM_SEG
        and (not segs or len(locs) == NUM_LOC)
    ):
        return rejected("truncated")
    if not locs and rest and rest[0].kind in ("special", "stray"):
        return rejected(f"stray token {rest[0].raw[:16]!r}")
    if len(locs) != NUM_LOC:
        return rejected(f"{len(locs)} loc tokens")
    if segs and len(segs) != NUM_SEG:
        return rejected(f"{len(segs)} seg tokens")
    if rest:
        return rejected(f"stray token {rest[0].raw[:16]!r}")
    if not label:
        return rejected("no label")
    y1, x1, y2, x2 = box
    if y2 <= y1:
        return rejected("bad box: y2 <= y1")
    if x2 <= x1:
        return rejected("bad box: x2 <= x1")
    return SegObject(box, codes, label)  # type: ignore[arg-type]


def parse_segmentation(text: str) -> list[SegObject]:
    """Parse model output into objects; never raises (non-strings give [])."""
    if not isinstance(text, str):
        return []
    try:
        return _parse(text)
    except Exception as exc:  # pragma: no cover - the parser is meant to be total
        return [SegObject((0, 0, 0, 0), None, "", f"parser error: {type(exc).__name__}")]


def _parse(text: str) -> list[SegObject]:
    text = _clean(text)
    if not text:
        return []
    toks = _lex(text)
    groups: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok.kind == "sep":
            groups.append([])
        else:
            groups[-1].append(tok)
    objects: list[SegObject] = []
    for gi, group in enumerate(groups):
        last_group = gi == len(groups) - 1
        if not any(t.raw.strip() for t in group):
            if last_group:  # text ends in "; ": the next object was cut off
                objects.append(SegObject((0, 0, 0, 0), None, "", "truncated"))
            else:
                objects.append(SegObject((0, 0, 0, 0), None, "", "empty object"))
            continue
        parts = _split_objects(group)
        for pi, part in enumerate(parts):
            objects.append(_parse_one(part, at_end=last_group and pi == len(parts) - 1))
    return objects


def _check_writable(obj: SegObject) -> None:
    if len(obj.box) != NUM_LOC or not all(isinstance(v, int) and 0 <= v <= LOC_MAX for v in obj.box):
        raise ValueError(f"box must be 4 ints in 0..{LOC_MAX}: {obj.box!r}")
    if obj.codes is not None and (
        len(obj.codes) != NUM_SEG or not all(isinstance(v, int) and 0 <= v <= SEG_MAX for v in obj.codes)
    ):
        raise ValueError(f"codes must be {NUM_SEG} ints in 0..{SEG_MAX}: {obj.codes!r}")
    label = obj.label.strip()
    if not label or any(c in label for c in ";<>\n\r"):
        raise ValueError(f"label must be non-empty text without ';', '<', '>' or newlines: {obj.label!r}")


def format_object(obj: SegObject) -> str:
    """One object exactly as big_vision writes it: 4 loc, 16 seg tokens, space, label."""
    _check_writable(obj)
    locs = "".join(f"<loc{int(v):04d}>" for v in obj.box)
    segs = "".join(f"<seg{int(v):03d}>" for v in obj.codes) if obj.codes is not None else ""
    return f"{locs}{segs} {obj.label.strip()}"


def format_objects(objects: Iterable[SegObject]) -> str:
    """A training suffix: objects joined by " ; " ("" for none). Raises ValueError on bad values."""
    return " ; ".join(format_object(o) for o in objects)


def parse_summary(objects: list[SegObject]) -> str:
    """Short status for the audit trail: "2 objects ok", "1 ok, 1 rejected: 17 seg tokens", "empty"."""
    if not objects:
        return "empty"
    ok = sum(o.accepted for o in objects)
    if ok == len(objects):
        return f"{ok} object ok" if ok == 1 else f"{ok} objects ok"
    reasons = Counter(o.status for o in objects if not o.accepted)
    text = ", ".join(r if n == 1 else f"{r} (x{n})" for r, n in reasons.items())
    return f"{ok} ok, {len(objects) - ok} rejected: {text}"


def parse_classes(classes: str | Sequence[str] | None) -> tuple[str, ...]:
    """'water', 'water,river', 'water ; river' or a list -> ('water', 'river')."""
    if classes is None:
        return DEFAULT_CLASSES
    items = classes.replace(";", ",").split(",") if isinstance(classes, str) else list(classes)
    out = tuple(dict.fromkeys(" ".join(str(c).split()) for c in items if str(c).strip()))
    if not out:
        raise InputError("classes_missing", field="classes")
    bad = [c for c in out if any(ch in c for ch in "<>;\n")]
    if bad:
        raise InputError("class_name_bad", field="classes", names=", ".join(map(repr, bad)))
    return out
