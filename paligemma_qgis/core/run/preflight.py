"""What the driver checks before the work and records after it: outputs, disk space, run facts."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, OutputExistsError
from ..inputs.scenes import Scene
from ..model.segmenter import EngineInfo
from ..rules import CPU_BATCH_SIZE
from ..specs import GridSpec, SegmentSpec
from .executor import PlannedScene

MOSAIC_MARGIN = 64 << 20  # free space kept beyond the mosaic's own needs


def check_outputs(spec: SegmentSpec, scenes: Sequence[Scene], resumed: bool) -> tuple[Path, Path | None]:
    """The GeoPackage (and mask) may be written: not an input, not a folder, not there unless asked."""
    check_out_crs(spec.output.out_crs)
    out = Path(spec.output.path)
    mask = Path(spec.output.mask_tif) if spec.output.mask_tif else None
    if mask is not None and len(scenes) > 1:
        raise InputError("mask_needs_one_scene", field="mask_tif", path=str(mask), scenes=len(scenes))
    sources = {Path(s.path).resolve() for s in scenes if not s.path.startswith(("<", "/vsi"))}
    for p, name in ((out, "output"), (mask, "mask_tif")):
        if p is None:
            continue
        if p.resolve() in sources:
            raise InputError("output_is_input", field=name, path=str(p))
        if p.exists() and p.is_dir():
            raise InputError("output_is_folder", field=name, path=str(p))
        if p.exists() and not spec.output.overwrite and not (resumed and p == mask):
            raise OutputExistsError("output_exists", field=name, path=str(p))
        check_writable(p, name)
    return out, mask


def check_out_crs(out_crs: str | None) -> None:
    """An output CRS pyproj does not know fails before the work, not after it."""
    if not out_crs:
        return
    import pyproj

    try:
        pyproj.CRS.from_user_input(out_crs)
    except pyproj.exceptions.CRSError:
        raise InputError("crs_unknown", field="out_crs", value=out_crs) from None


def check_writable(path: Path, name: str = "output") -> None:
    """Fail before the work, not after it, when the output folder cannot take a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise InputError(
            "output_not_writable",
            field=name,
            path=str(path),
            folder=str(path.parent),
            reason=exc.strerror or str(exc),
        ) from None


def check_disk(pending: Sequence[PlannedScene], workdir: str | None) -> None:
    """The largest scene's mosaic (2 bytes a pixel) must fit in the work folder, checked before work."""
    if not pending:
        return
    biggest = max(pending, key=lambda p: p.mosaic_bytes)
    folder = Path(workdir or tempfile.gettempdir())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if biggest.mosaic_bytes + MOSAIC_MARGIN > free:
        raise InputError(
            "disk_full",
            field="workdir",
            folder=str(folder),
            scene=biggest.scene.label,
            needed=size_text(biggest.mosaic_bytes),
            free=size_text(free),
        )


def size_text(n: int) -> str:
    """Bytes as people read them: '1.42 GB', '310 MB', '12 kB' (never '0.00 GB')."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    return f"{max(n, 0) / 1e3:.0f} kB"


def aoi_facts(grid: GridSpec) -> dict[str, str]:
    """An AOI file's geometry itself, for ``revectorize`` when the file is gone (QGIS passes a temporary copy)."""
    if not isinstance(grid.aoi, str) or not os.path.isfile(grid.aoi):  # os.path: a long WKT is no error
        return {}
    import shapely

    from ..inputs.grid import read_aoi

    geom, crs = read_aoi(grid.aoi)
    return {"aoi_wkb": shapely.to_wkb(geom, hex=True), "aoi_wkb_crs": crs.to_wkt()}


def _crs_text(wkt: str | None) -> str:
    import pyproj

    return pyproj.CRS.from_wkt(wkt).to_string() if wkt else ""


def run_facts(
    spec: SegmentSpec,
    scenes: Sequence[Scene],
    crs_of: Sequence[str | None],
    info: EngineInfo | None,
    resumed: bool,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``run`` table's facts beyond the spec: scenes, engine, device, how the run went."""
    done = len(crs_of)
    return {
        **(extra or {}),
        "scenes": len(scenes),
        "scenes_failed": len(scenes) - done,
        "inputs": list(spec.raster),
        "raster": scenes[0].source if len(scenes) == 1 else f"{len(scenes)} scenes",
        "raster_crs": _crs_text(crs_of[0]) if len(scenes) == 1 else "",
        "engine": info.name if info else spec.engine.name,
        "device": (info.device or "") if info else "",
        "executor": spec.run.executor,
        "resumed": resumed,
        "batch_size": int(spec.engine.batch_size or (info.batch_size if info else None) or CPU_BATCH_SIZE),
        "chip_size": info.chip_size if info else None,
        **aoi_facts(spec.grid),
    }
