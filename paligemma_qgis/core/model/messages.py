"""Error codes raised in core/model, with their neutral words (see core.errors)."""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {
    "class_name_bad": Message("class names may not contain '<', '>', ';' or newlines: {names}"),
}
