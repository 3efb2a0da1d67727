"""One door for every input file: library exceptions become one-line errors that name the file.

rasterio, pyogrio, PIL, json and numpy each raise their own exceptions, often from deep inside
GDAL, with messages that do not name the file ("Read failed. See previous exception"), that
end in driver hints, or that repeat themselves. Every command opens and reads its inputs
through these functions, so a user sees ``FILE: what is wrong`` (and, for a failed raster
read, which window) and never a traceback. ``reading(path, what)`` is the one place that
knows the exception types; the openers below are thin uses of it.

Images: PIL refuses images over twice ``Image.MAX_IMAGE_PIXELS`` (a decompression-bomb
guard) and only warns between one and two times that. Here anything over the limit is
refused with the size and the way out (``allow_large``, the option ``allow_large_images``).

Every error carries a code from ``messages.py`` with the file (``path``), what it is to the
user (``what``) and the library's reason (``detail``); front ends word it.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import threading
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, PaliGemmaQgisError

if TYPE_CHECKING:
    from geopandas import GeoDataFrame
    from PIL.Image import Image
    from pyproj import CRS
    from rasterio.io import DatasetReader
    from rasterio.windows import Window
    from shapely.geometry.base import BaseGeometry

_PIL_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide


@functools.cache
def library_errors() -> tuple[type[BaseException], ...]:
    """The exception types a library raises for a bad file (not our own programming errors)."""
    types: list[type[BaseException]] = [
        OSError,
        ValueError,  # incl. json.JSONDecodeError, UnicodeDecodeError, numpy's bad-npz errors
        EOFError,
        KeyError,
        RuntimeError,  # pyogrio's DataSourceError, DataLayerError, FieldError, GeometryError
        MemoryError,
        sqlite3.DatabaseError,
        zipfile.BadZipFile,
    ]
    try:
        from rasterio._err import CPLE_BaseError
        from rasterio.errors import RasterioError

        types += [RasterioError, CPLE_BaseError]
    except ImportError:  # pragma: no cover - rasterio is a dependency
        pass
    try:
        from PIL.Image import DecompressionBombError, DecompressionBombWarning

        types += [DecompressionBombError, DecompressionBombWarning]
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    return tuple(types)


_HINT_RE = re.compile(r";?\s*It might help to specify the correct driver.*$", re.S)
_SEE_PREVIOUS = "See previous exception"


def library_detail(exc: BaseException, path: str | Path | None = None) -> str:
    """The useful part of a library's message, on one line, without the file's own name."""
    if isinstance(exc, PaliGemmaQgisError):
        return str(exc)
    cause = exc.__cause__ or exc.__context__
    text = str(exc)
    if _SEE_PREVIOUS in text and cause is not None:
        text = str(cause)  # rasterio: "Read failed. See previous exception for details."
    if isinstance(exc, OSError) and exc.strerror and not text.strip():
        text = exc.strerror
    if isinstance(exc, MemoryError):
        text = "not enough memory" + (f" ({text})" if text else "")
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = exc.strerror  # "[Errno 2] No such file or directory: 'x'" -> the reason only
    text = _HINT_RE.sub("", text)
    if path is not None:
        for form in {str(path), Path(path).name}:
            text = text.replace(f"'{form}'", "").replace(f"{form}, ", "").replace(f"{form}: ", "")
    if "database disk image is malformed" in text:
        text = "corrupt or truncated SQLite database"
    elif "not recognized as being in a supported file format" in text:
        text = "not a format GDAL can read (unknown, corrupt or empty file)"
    parts = [p.strip() for p in re.split(r";\s+", " ".join(text.split()))]
    text = "; ".join(dict.fromkeys(p for p in parts if p))  # GDAL often repeats itself
    if not text:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def window_text(window: Window | None) -> str:
    """A window as users read it: 'rows 0-224, cols 448-672'."""
    if window is None:
        return "the whole raster"
    r0, c0 = int(window.row_off), int(window.col_off)
    return f"rows {r0}-{r0 + int(window.height)}, cols {c0}-{c0 + int(window.width)}"


@contextmanager
def reading(
    path: str | Path,
    what: str,
    *,
    window: Window | None = None,
    during: str = "",
    field: str | None = None,
) -> Iterator[None]:
    """Turn a library exception raised inside into an InputError naming ``path`` (and window).

    ``what``: what the file is to the user ("truth mask", "label vectors"); ``during``: what was
    being done when it failed ("reading scene statistics"); ``field``: the option it came from.
    """
    try:
        yield
    except library_errors() as exc:
        raise input_error(path, what, exc, window=window, during=during, field=field) from None


def input_error(
    path: str | Path,
    what: str,
    exc: BaseException,
    *,
    window: Window | None = None,
    during: str = "",
    field: str | None = None,
) -> InputError:
    """The one-line InputError for ``exc`` raised while reading ``path``.

    A failed read of a window, or during a named step, is ``read_failed*`` (the file is
    truncated or corrupt); otherwise the kind of OS error, or ``file_unreadable``.
    """
    from PIL.Image import DecompressionBombError, DecompressionBombWarning

    facts = {"path": str(path), "what": what}
    if isinstance(exc, (DecompressionBombError, DecompressionBombWarning)):
        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(m.group(1)) / 1e6:.0f} megapixels" if m else "too large"
        limit = f"{_pil_limit() / 1e6:.0f}"
        return InputError("image_too_large", field=field, size=size, limit=limit, **facts)
    detail = library_detail(exc, path)
    if window is not None or during:
        code = "read_failed_while" if window is None else "read_failed_in_while" if during else "read_failed"
        place = {"window": window_text(window)} if window is not None else {}
        if during:
            place["during"] = during
        return InputError(code, field=field, detail=detail, **place, **facts)
    if isinstance(exc, FileNotFoundError):
        return InputError("file_not_found", field=field, **facts)
    if isinstance(exc, IsADirectoryError):
        return InputError("file_is_folder", field=field, **facts)
    if isinstance(exc, PermissionError):
        return InputError("file_permission", field=field, **facts)
    return InputError("file_unreadable", field=field, detail=detail, **facts)


def _pil_limit() -> int:
    from PIL import Image

    return int(Image.MAX_IMAGE_PIXELS or 0)


def require_exists(path: str | Path, what: str) -> Path:
    """``path`` as a Path; InputError when it does not exist (URLs and GDAL /vsi paths pass).

    Folders pass: GDAL reads some (an ArcInfo grid, a folder of shapefiles); the openers
    say "is a folder" when theirs cannot.
    """
    text = str(path)
    p = Path(path)
    if "://" not in text and not text.startswith(("/vsi", "<VRTDataset")) and not p.exists():
        raise InputError("file_not_found", path=text, what=what)
    return p


# --------------------------------------------------------------------------- rasters


def open_raster_dataset(path: str | Path, what: str = "raster", label: str | None = None) -> DatasetReader:
    """``rasterio.open(path)`` with errors naming the file (or ``label``: a STAC item's VRT is XML text).

    rasterio's NotGeoreferencedWarning is silenced: every caller checks the CRS itself and
    says what to do, so the warning would only repeat that in library words.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    name = str(label or path)
    try:
        require_exists(path, what)
    except InputError:
        raise InputError("file_not_found", path=name, what=what) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return rasterio.open(path)
        except library_errors() as exc:
            if not str(path).startswith("<") and Path(path).is_dir():
                raise InputError("raster_is_folder", path=name, what=what) from None
            detail = library_detail(exc, path)
            raise InputError("raster_unopenable", path=name, what=what, detail=detail) from None


def probe_raster(path: str | Path) -> bool:
    """Whether GDAL opens ``path`` as a raster with at least one band (quietly; for dispatching)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as ds:
                return ds.count >= 1 and ds.width > 0
        except library_errors():
            return False


# --------------------------------------------------------------------------- vectors


def list_layers(path: str | Path, what: str = "vector file") -> list[str]:
    import pyogrio

    require_exists(path, what)
    with reading(path, what):
        return [str(name) for name, _ in pyogrio.list_layers(path)]


def read_vectors(
    path: str | Path,
    what: str = "vectors",
    *,
    layer: str | None = None,
    where: str | None = None,
    require_crs: bool = True,
) -> GeoDataFrame:
    """A GeoDataFrame read with pyogrio; a layer without a CRS is refused (when it has features)."""
    import pyogrio

    require_exists(path, what)
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer, where=where)
    except library_errors() as exc:
        detail = library_detail(exc, path)
        raise InputError("vectors_unreadable", path=str(path), what=what, detail=detail) from None
    if require_crs and gdf.crs is None and len(gdf):
        raise InputError("vectors_no_crs", path=str(path), what=what)
    return gdf


def check_finite_geometries(
    geoms: Sequence[BaseGeometry] | np.ndarray, path: str | Path, what: str, crs: CRS | str
) -> None:
    """Refuse geometries whose coordinates became infinite or NaN on reprojection.

    That happens when a file's coordinates are not in the CRS it claims, e.g. metres in a
    GeoJSON file, which is longitude/latitude by definition.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return
    coords = shapely.get_coordinates(geoms)
    if len(coords) and not np.isfinite(coords).all():
        raise InputError("coordinates_outside_crs", path=str(path), what=what, crs=str(crs))


# --------------------------------------------------------------------------- images


def open_image(path: str | Path, what: str = "image", *, allow_large: bool = False) -> Image:
    """A fully decoded PIL image (truncated and corrupt files fail here, not later).

    Over PIL's MAX_IMAGE_PIXELS the image is refused unless ``allow_large``.
    """
    from PIL import Image

    require_exists(path, what)
    with reading(path, what), _pil_size_guard(allow_large):
        im = Image.open(path)
        try:
            im.load()  # single-frame images close their file here
        except BaseException:
            im.close()
            raise
        return im


def image_size(path: str | Path, what: str = "image", *, allow_large: bool = False) -> tuple[int, int]:
    """(width, height) from the header only; a file PIL cannot identify fails here."""
    from PIL import Image

    require_exists(path, what)
    with reading(path, what), _pil_size_guard(allow_large), Image.open(path) as im:
        return im.size


@contextmanager
def _pil_size_guard(allow_large: bool) -> Iterator[None]:
    from PIL import Image

    with warnings.catch_warnings():
        if allow_large:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _PIL_LOCK:
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    yield
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        else:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield


# --------------------------------------------------------------------------- text, JSON, npz


def read_text(path: str | Path, what: str = "text file") -> str:
    require_exists(path, what)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            "text_not_utf8", path=str(path), what=what, byte=exc.start, reason=exc.reason
        ) from None
    except OSError as exc:
        raise input_error(path, what, exc) from None


def read_jsonl(path: str | Path, required: Sequence[str], what: str = "JSONL file") -> list[tuple[int, dict]]:
    """(line number, record) for every non-empty line of a JSONL file (ours, or one a user made).

    Errors name the file, the line and the problem; each record is an object with ``required``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("jsonl_unreadable", path=str(path), detail=str(exc)) from None
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError("jsonl_not_json", path=str(path), line=n, detail=exc.msg) from None
        if not isinstance(rec, dict) or not set(required) <= set(rec):
            raise InputError("jsonl_missing_keys", path=str(path), line=n, keys=", ".join(required))
        out.append((n, rec))
    return out


def load_npz(
    path: str | Path,
    names: Sequence[str] | None = None,
    *,
    error: type[PaliGemmaQgisError] = InputError,
    hint: str = "",
    field: str | None = None,
) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an .npz file that it has (all when None); pickles are refused.

    ``error``: the exception class to raise (weights use WeightsError); ``hint``: what to do, in
    the caller's words; ``field``: the option the file came from (the dialog names its own field).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            wanted = npz.files if names is None else [k for k in names if k in set(npz.files)]
            return {k: npz[k] for k in wanted}
    except library_errors() as exc:
        facts = {"path": str(path), "detail": library_detail(exc)}
        if hint:
            raise error("npz_unreadable_hint", field=field, hint=hint, **facts) from None
        raise error("npz_unreadable", field=field, **facts) from None
