"""Joining a Ray cluster, or starting a local Ray, for the Ray executor.

Apart from the executor because who may reach what (which interfaces a local Ray listens on,
how a remote address is checked before ``ray.init`` waits minutes) is a concern of its own.

A Ray that this tool starts (no address, or the plugin's ``local``) is for this computer alone:
anyone who can reach a Ray can run code in it. So every one of its processes (GCS, raylet and
object manager, workers, agents) listens on 127.0.0.1 only, it asks a bearer token that only
this run knows (Ray >= 2.52, ``RAY_AUTH_MODE=token``; the token travels to Ray's processes in
their environment, never in a file), and it has no dashboard. Ray offers no public switch for
the first: on Linux it turns a loopback node address into the machine's own, unless its
clusters are switched off as they are on Windows and macOS, which is done here for the start.
A cluster given by address is joined as it is: it must be trusted like code run on this
computer (the plugin asks before sending work there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..specs import RunSpec

from ..errors import InputError, PaliGemmaQgisError

LOCAL_ADDRESSES = ("", "local")  # what starts a Ray on this computer
LOOPBACK = "127.0.0.1"
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise InputError("ray_missing", field="ray_address") from None
    return ray


def connect(ray: ModuleType, options: RunSpec) -> bool:
    """Join or start Ray; True when this run started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    address = (options.ray_address or "").strip()
    local = address in LOCAL_ADDRESSES
    if not local:
        package = Path(__file__).resolve().parents[1]
        kwargs["runtime_env"] = {"py_modules": [str(package)]}
        kwargs["address"] = address
        probe(address)
    try:
        with _loopback_only() if local else _auth_from_environment():
            ray.init(**({**kwargs, "_node_ip_address": LOOPBACK} if local else kwargs))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PaliGemmaQgisError(
            "ray_unreachable", field="ray_address", address=address or "(local)", reason=str(exc)
        ) from None
    return True


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray starts: its node address stays 127.0.0.1 and it asks a fresh token.

    The environment is restored afterwards (Ray's processes keep theirs), so a later run in this
    process that joins another cluster does not send this token or ask for one.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without it: its own default
        clusters = None
    else:
        clusters = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    saved = {name: os.environ.get(name) for name in _AUTH_ENV}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_urlsafe(32))
    try:
        _reload_config()
        if clusters is not None:
            ray_constants.ENABLE_RAY_CLUSTER = False  # keeps 127.0.0.1 from becoming the LAN address
        yield
    finally:
        if clusters is not None:
            ray_constants.ENABLE_RAY_CLUSTER = clusters
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _auth_from_environment() -> Iterator[None]:
    """Joining a cluster: Ray's authentication settings as this process's environment says
    (not as a local Ray started earlier in this process left them)."""
    _reload_config()
    yield


def _reload_config() -> None:
    """Let Ray's C++ side read RAY_AUTH_MODE from the environment again (what Ray itself does
    when it turns token authentication on)."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")


PROBE_SECONDS = 5.0
_DEFAULT_PORTS = {"ray": 10001, "": 6379}  # Ray Client's port, the head's GCS port


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail in seconds when nothing answers at a cluster address: ``ray.init`` waits minutes.

    Only the TCP port is tried (``auto`` and other schemes are left to Ray); whether a Ray
    listens there is still for ``ray.init`` to find out.
    """
    scheme, _, rest = address.rpartition("://")
    if address == "auto" or scheme not in _DEFAULT_PORTS:
        return
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or not port.isdigit():
        host, port = rest.rstrip("/"), str(_DEFAULT_PORTS[scheme])
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            what = f"the host name {host!r} is not known ({exc.strerror or exc})"
        elif isinstance(exc, TimeoutError):
            what = f"nothing answers at {host}:{port} within {timeout:g} s"
        else:
            what = f"nothing answers at {host}:{port} ({exc.strerror or exc})"
        raise PaliGemmaQgisError(
            "ray_unreachable", field="ray_address", address=address, reason=what
        ) from None
