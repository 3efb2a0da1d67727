"""Joining a Ray cluster, or starting a local Ray, for the Ray executor.

Apart from the executor because who may reach what (which interfaces a local Ray listens on,
how a remote address is checked before ``ray.init`` waits minutes) is a concern of its own.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from ..errors import InputError, PaliGemmaQgisError


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise InputError(
            "--executor ray needs Ray in the Python that runs the job: pip install ray "
            "(or run without --executor ray)",
            field="ray_address",
            code="ray_missing",
        ) from None
    return ray


def connect(ray: Any, options: Any) -> bool:
    """Join or start Ray; True when this run started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    if options.ray_address:
        package = Path(__file__).resolve().parents[1]
        kwargs["runtime_env"] = {"py_modules": [str(package)]}
        kwargs["address"] = options.ray_address
    if options.ray_address:
        probe(options.ray_address)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PaliGemmaQgisError(
            f"cannot join the Ray cluster {options.ray_address or '(local)'}: {exc}",
            field="ray_address",
            code="ray_unreachable",
        ) from None
    return True


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
            f"cannot join the Ray cluster {address}: {what}; check the address and that the cluster is running",
            field="ray_address",
            code="ray_unreachable",
        ) from None
