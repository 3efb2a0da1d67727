"""Error codes raised in core/geometry, with their neutral words (see core.errors)."""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {}
