"""Where the mask codec weights (vae-oid.npz) come from: paths, cache, download, checksums.

Kept free of torch so that ``weights where``/``verify`` and the QGIS side can use it.
Google publishes the file in the big_vision bucket; the Hugging Face space of the
PaliGemma demo carries the same bytes and is the fallback.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import OutputExistsError, WeightsError
from ..inputs.files import load_npz

VAE_FILENAME = "vae-oid.npz"
VAE_SHA256 = "5586010257b8536dddefab65e7755077f21d5672d5674dacf911f73ae95a4447"
VAE_SIZE = 8_479_556
VAE_ENV = "PALIGEMMA_QGIS_VAE"
VAE_URLS = (
    "https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz",
    # The PaliGemma demo space keeps the file at its root; it moved from google/ to
    # big-vision/ (both names are used in the wild, so both are tried).
    "https://huggingface.co/spaces/big-vision/paligemma-hf/resolve/main/vae-oid.npz",
    "https://huggingface.co/spaces/google/paligemma-hf/resolve/main/vae-oid.npz",
)
DOWNLOAD_COMMAND = "python -m paligemma_qgis weights download"  # the command line's remedy names it


def _resblock(prefix: str) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.0.weight": (128, 128, 3, 3),
        f"{prefix}.0.bias": (128,),
        f"{prefix}.2.weight": (128, 128, 3, 3),
        f"{prefix}.2.bias": (128,),
        f"{prefix}.4.weight": (128, 128, 1, 1),
        f"{prefix}.4.bias": (128,),
    }


def _layer(name: str, shape: tuple[int, ...], nbias: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": shape, f"{name}.bias": (nbias,)}


# PyTorch layouts: conv (out, in, kh, kw), transposed conv (in, out, kh, kw).
VAE_SHAPES: dict[str, tuple[int, ...]] = {
    **_layer("encoder.0", (16, 1, 4, 4), 16),
    **_layer("encoder.2", (32, 16, 4, 4), 32),
    **_layer("encoder.4", (64, 32, 4, 4), 64),
    **_layer("encoder.6", (128, 64, 4, 4), 128),
    **_resblock("encoder.8.net"),
    **_resblock("encoder.9.net"),
    **_layer("encoder.10", (512, 128, 1, 1), 512),
    **_layer("decoder.0", (128, 512, 1, 1), 128),
    **_resblock("decoder.2.net"),
    **_resblock("decoder.3.net"),
    **_layer("decoder.4", (128, 128, 4, 4), 128),
    **_layer("decoder.6", (128, 64, 4, 4), 64),
    **_layer("decoder.8", (64, 32, 4, 4), 32),
    **_layer("decoder.10", (32, 16, 4, 4), 16),
    **_layer("decoder.12", (1, 16, 1, 1), 1),
    "_vq_vae._embedding": (128, 512),
    "_vq_vae._ema_w": (128, 512),
    "_vq_vae._ema_cluster_size": (128,),
}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_vae_path() -> Path:
    """The per-user cache location: <user cache>/paligemma_qgis/vae-oid.npz."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("paligemma_qgis")) / VAE_FILENAME


def _vae_missing(path: Path, source: str) -> WeightsError:
    """vae_missing, with where to get the file (the URLs, the cache, the environment variable)."""
    return WeightsError(
        "vae_missing",
        field="vae",
        path=str(path),
        source=source,
        file=VAE_FILENAME,
        url=VAE_URLS[0],
        url2=VAE_URLS[1],
        cache=str(default_vae_path()),
        env=VAE_ENV,
    )


def find_vae(explicit: str | Path | None = None) -> Path:
    """The VAE file to use: an explicit path, then $PALIGEMMA_QGIS_VAE, then the user cache.

    An explicit path or env var that points nowhere is an error, never silently skipped.
    """
    cache = default_vae_path()
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise _vae_missing(path, "given explicitly")
        return path
    env = os.environ.get(VAE_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise _vae_missing(path, f"from ${VAE_ENV}")
        return path
    if cache.is_file():
        return cache
    raise _vae_missing(cache, f"the default place: no file given, and ${VAE_ENV} is not set")


def check_checksum(path: str | Path, *, allow_custom_vae: bool = False) -> str:
    """sha256 of the file; refuses a file that is not Google's vae-oid.npz unless allowed."""
    path = Path(path)
    digest = sha256_file(path)
    if digest != VAE_SHA256 and not allow_custom_vae:
        raise WeightsError(
            "vae_checksum", field="vae", path=str(path), digest=digest, file=VAE_FILENAME, expected=VAE_SHA256
        )
    return digest


def load_vae_arrays(path: str | Path, *, allow_custom_vae: bool = False) -> dict[str, np.ndarray]:
    """Read and validate vae-oid.npz: every array present with its exact shape, float32.

    Raises WeightsError naming the file and the array for anything wrong.
    """
    path = Path(path)
    if not path.exists():
        raise _vae_missing(path, "given explicitly")
    if not path.is_file():
        raise WeightsError("vae_not_file", field="vae", path=str(path))
    arrays = load_npz(
        path,
        list(VAE_SHAPES),
        error=WeightsError,
        hint="Download it again",
        field="vae",
    )
    missing = [k for k in VAE_SHAPES if k not in arrays]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise WeightsError(
            "vae_arrays_missing", field="vae", path=str(path), names=", ".join(missing[:3]) + more
        )
    for name, shape in VAE_SHAPES.items():
        arr = arrays[name]
        if tuple(arr.shape) != shape:
            raise WeightsError(
                "vae_array_shape",
                field="vae",
                path=str(path),
                name=name,
                shape=str(tuple(arr.shape)),
                expected=str(shape),
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise WeightsError(
                "vae_array_dtype", field="vae", path=str(path), name=name, dtype=str(arr.dtype)
            )
        if not np.all(np.isfinite(arr)):
            raise WeightsError("vae_array_nonfinite", field="vae", path=str(path), name=name)
        arrays[name] = np.ascontiguousarray(arr, dtype=np.float32)
    check_checksum(path, allow_custom_vae=allow_custom_vae)
    return arrays


def _fetch(url: str, dest: Path, *, sha256: str | None, progress: bool, timeout: float) -> None:
    """Stream url into a temp file next to dest, verify, then os.replace; nothing left on failure."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        received = 0
        req = urllib.request.Request(url, headers={"User-Agent": "paligemma_qgis"})
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(req, timeout=timeout) as resp,
            tqdm(
                total=(expected := int(resp.headers.get("Content-Length") or 0)) or None,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                h.update(block)
                received += len(block)
                bar.update(len(block))
        if expected and received != expected:  # urllib returns b"" when the server hangs up early
            raise WeightsError("download_truncated", url=url, received=received, expected=expected)
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise WeightsError("download_checksum", url=url, digest=digest, expected=sha256)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared cache must stay readable
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_vae(
    dest: str | Path | None = None,
    *,
    url: str | None = None,
    progress: bool = True,
    force: bool = False,
    sha256: str | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download vae-oid.npz (big_vision bucket, then the Hugging Face space) and verify it.

    dest defaults to the user cache. An existing dest with the right checksum is kept; one
    with another checksum is refused (OutputExistsError) unless force. ``sha256`` defaults
    to Google's checksum; verify=False skips the check (mirrors of custom VAEs).
    """
    if sha256 is None and verify:
        sha256 = VAE_SHA256
    elif not verify:
        sha256 = None
    dest = Path(dest).expanduser() if dest is not None else default_vae_path()
    if dest.is_dir():
        dest = dest / VAE_FILENAME
    if dest.exists() and not force:
        if sha256 is not None and sha256_file(dest) == sha256:
            return dest
        what = "exists" if sha256 is None else "exists with another checksum"
        raise OutputExistsError("vae_exists", field="dest", path=str(dest), state=what)
    urls = [url] if url else list(VAE_URLS)
    failures: list[str] = []
    for u in urls:
        try:
            _fetch(u, dest, sha256=sha256, progress=progress, timeout=timeout)
            return dest
        except WeightsError as exc:
            failures.append(str(exc))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # incl. timeouts
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            failures.append(f"{u}: {reason}")
    raise WeightsError(
        "download_failed",
        file=VAE_FILENAME,
        failures="; ".join(failures),
        url=VAE_URLS[0],
        path=str(dest),
        env=VAE_ENV,
    )
