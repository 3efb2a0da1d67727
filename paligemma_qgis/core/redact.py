"""Credentials out of every text the tool keeps, shows or sends: one redaction for all of them.

Rasters are often read from signed or password-protected URLs (``/vsicurl/https://user:pw@host/
scene.tif``, a presigned S3 link ``...?X-Amz-Signature=...``, an Azure SAS ``...?sv=...&sig=...``).
The real URL is needed in memory to read the scene; everything persisted (GeoPackage, journal,
export.json), logged, displayed or used as an id goes through ``redact`` first.

``redact(text)`` works on any text (an error message that holds a URL in its middle, a VRT
document, a JSON dump) and replaces with ``REDACTED``:

- the user and password of a URL (``scheme://REDACTED@host``), also inside GDAL paths
  (``/vsicurl/http://...``), inside the percent-encoded ``url=`` of ``/vsicurl?url=...``, and one
  encoding deeper;
- the values of query parameters that sign or authorise a request (``SECRET_PARAMS`` and the
  ``X-Amz-*``, ``X-Goog-*`` families, names ending in token, secret, password, signature,
  ``_key``...), case-insensitively, at the same encoding depths, also after XML's ``&amp;``;
- ``Authorization:`` header values and ``NAME_SECRET=value``-style environment assignments.

It over-redacts rather than under-redacts (``key`` and ``code`` are redacted even where they are
harmless), is idempotent, and keeps the text's shape so a message still reads.
``scene_stem(location)`` is the name part of a URL or GDAL path (no query, no user, no ``/``):
what a scene id is made of. Standard library only: the QGIS plugin imports this too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, unquote

__all__ = ["PLACEHOLDER", "SECRET_PARAMS", "is_secret_param", "redact", "redact_tree", "scene_stem"]

PLACEHOLDER = "REDACTED"

# Query parameters whose value signs or authorises a request (compared lower-case).
SECRET_PARAMS = frozenset(
    {
        # generic
        "token", "key", "signature", "sig", "access_token", "id_token", "refresh_token", "code",
        "apikey", "api_key", "api-key", "auth", "authorization", "password", "passwd", "pwd",
        "secret", "client_secret", "session", "sessiontoken", "jwt", "sas", "credential",
        "credentials", "policy", "key-pair-id", "awsaccesskeyid", "googleaccessid",
        # Azure shared access signatures (sv, ss, srt, sp, se, st, spr, sip, sig and the
        # user-delegation fields): only sig is secret, the rest describe it; all are redacted
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "sr", "sdd", "skoid", "sktid", "skt",
        "ske", "sks", "skv", "saoid", "suoid", "scid",
        # GDAL /vsicurl?... options that carry credentials
        "cookie", "userpwd", "proxyuserpwd", "proxyauth",
    }
)  # fmt: skip
_SECRET_PREFIXES = ("x-amz-", "x-goog-", "x-ms-", "header.")
_SECRET_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "_key",
    "-key",
    "apikey",
    "credential",
)

_DEPTHS = (0, 1, 2)  # plain, percent-encoded once (/vsicurl?url=...), twice
_OPEN = "[^\\s'\"<>\\\\]"  # what a URL part may be made of at all (not blanks, quotes, <>, \)


def _enc(char: str, depth: int) -> str:
    """A character as it appears at an encoding depth, as a regex ('@' at depth 1 is '%40')."""
    if depth == 0:
        return re.escape(char)
    return "%" + "25" * (depth - 1) + f"{ord(char):02X}"


def _any(chars: str, depths: range | tuple[int, ...]) -> str:
    return "|".join(_enc(c, d) for c in chars for d in depths)


def _userinfo_pattern(depth: int) -> re.Pattern[str]:
    """scheme://USER:PASSWORD@ at one depth; greedy to the last '@' before the path starts."""
    stop = _any("/?#", range(depth + 1)) + ("|&" if depth else "")
    return re.compile(
        rf"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*{_enc(':', depth)}{_enc('/', depth)}{_enc('/', depth)})"
        rf"(?P<user>(?:(?!{stop}){_OPEN})+){_enc('@', depth)}",
        re.IGNORECASE,
    )


def _param_pattern(depth: int) -> re.Pattern[str]:
    """?NAME=VALUE or &NAME=VALUE (or ;NAME= after XML's &amp;) at one depth."""
    sep = _any("?&;", (depth,))
    stop = _any("&#", range(depth + 1))
    return re.compile(
        rf"(?P<head>(?:{sep})(?P<name>[A-Za-z0-9_.\-]+){_enc('=', depth)})"
        rf"(?P<value>(?:(?!{stop}){_OPEN})*)",
        re.IGNORECASE,
    )


_USERINFO = [_userinfo_pattern(d) for d in _DEPTHS]
_PARAMS = [_param_pattern(d) for d in _DEPTHS]
_HEADER = re.compile(r"(?P<head>\b(?:proxy-)?authorization\s*:\s*)(?P<value>[^\r\n'\",;]+)", re.IGNORECASE)
_ENV = re.compile(
    r"(?P<head>\b[A-Z0-9_]*(?:SECRET|PASSWORD|PASSWD|TOKEN|USERPWD|ACCESS_KEY|API_KEY|ACCOUNT_KEY|SAS)"
    r"[A-Z0-9_]*\s*=\s*)(?P<value>[^\s'\"]+)"
)


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's value signs or authorises a request (case-insensitive)."""
    name = unquote(unquote(name)).strip().lower()
    return name in SECRET_PARAMS or name.startswith(_SECRET_PREFIXES) or name.endswith(_SECRET_SUFFIXES)


def _param(match: re.Match[str]) -> str:
    if not is_secret_param(match["name"]) or match["value"] == PLACEHOLDER:
        return match[0]
    return match["head"] + PLACEHOLDER


def _user(match: re.Match[str]) -> str:
    return match["head"] + PLACEHOLDER + match[0][len(match["head"]) + len(match["user"]) :]


def redact(text: str) -> str:
    """``text`` with every URL credential and signing parameter value replaced by ``REDACTED``."""
    if not text or not isinstance(text, str):
        return text
    for pattern in _USERINFO:
        text = pattern.sub(_user, text)
    for pattern in _PARAMS:
        text = pattern.sub(_param, text)
    text = _HEADER.sub(lambda m: m["head"] + PLACEHOLDER, text)
    return _ENV.sub(lambda m: m["head"] + PLACEHOLDER, text)


def redact_tree(value: object, _redact: Callable[[str], str] = redact) -> Any:
    """Every string in a JSON-like value (dict keys too) redacted; other values kept as they are."""
    if isinstance(value, str):
        return _redact(value)
    if isinstance(value, dict):
        return {redact_tree(k, _redact): redact_tree(v, _redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_tree(v, _redact) for v in value)
    return value


_VSI_OPTIONS = re.compile(r"^/vsi[a-z0-9_]+\?(?P<options>.*)$", re.IGNORECASE)


def scene_stem(location: str) -> str:
    """The name of what a URL or GDAL path points at, without suffix, query, credentials or ``/``.

    ``/vsicurl/https://u:p@host/a/scene_20200831.tif?X-Amz-Signature=...`` -> ``scene_20200831``;
    ``/vsicurl?url=https%3A%2F%2Fhost%2Fb.tif&use_head=no`` -> ``b``; a URL without a path names
    its host. Empty when nothing is left (the caller picks a default).
    """
    text = redact(str(location))
    options = _VSI_OPTIONS.match(text)
    if options:
        url = [v for k, v in parse_qsl(options["options"], keep_blank_values=True) if k.lower() == "url"]
        text = redact(url[0]) if url else ""
    text = re.split(r"[?#]", text, maxsplit=1)[0]
    parts = [p for p in text.split("/") if p]
    name = parts[-1] if parts else ""
    if len(parts) == 2 and parts[0].endswith(":"):  # scheme://[user@]host
        return name.rsplit("@", 1)[-1]
    return PurePosixPath(name).stem if name not in (".", "..") else ""
