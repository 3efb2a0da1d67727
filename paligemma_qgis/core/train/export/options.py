"""Export options and summary: JSON-serialisable, so the QGIS worker can send and return them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ...errors import InputError
from .recipe import LABEL, PREFIX


class _Serialisable:
    """from_dict/to_dict for the worker protocol (JSON in, JSON out)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}")
        kwargs = dict(data)
        for k in ("bands",):
            if kwargs.get(k) is not None:
                kwargs[k] = list(kwargs[k])
        return cls(**kwargs)


@dataclass
class ExportSummary(_Serialisable):
    """What an export wrote; ``mean_codec_iou`` is decoded tokens vs exported masks."""

    out_dir: str
    n_candidates: int = 0
    n_train: int = 0
    n_valid: int = 0
    n_empty_written: int = 0
    n_objects: int = 0
    n_objects_dropped: int = 0
    max_objects_per_chip: int = 0
    mean_codec_iou: float | None = None
    min_codec_iou: float | None = None
    not_written: dict[str, int] = field(default_factory=dict)
    n_misaligned: int = 0
    n_labels_repaired: int = 0  # invalid label polygons repaired with make_valid
    n_read_errors: int = 0  # raster reads with unreadable blocks, mapped as nodata (on_read_error skip)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        iou = "n/a" if self.mean_codec_iou is None else f"{self.mean_codec_iou:.3f}"
        out = [
            f"wrote {self.n_train} train + {self.n_valid} valid chips to {self.out_dir} "
            f"({self.n_empty_written} without water) from {self.n_candidates} candidates",
            f"objects: {self.n_objects} written (at most {self.max_objects_per_chip} in one chip), "
            f"{self.n_objects_dropped} dropped (too small, collapsed on the 1024 grid, or over --max-objects)",
            f"codec round trip: mean IoU {iou} of decoded tokens vs exported masks"
            + ("" if self.min_codec_iou is None else f" (worst chip {self.min_codec_iou:.3f})"),
        ]
        if self.not_written:
            out.append("not written: " + ", ".join(f"{k} {v}" for k, v in sorted(self.not_written.items())))
        if self.n_misaligned:
            out.append(f"{self.n_misaligned} chips flagged misaligned (see chips.gpkg, layer chips)")
        if self.n_labels_repaired:
            out.append(
                f"repaired {self.n_labels_repaired} invalid label polygon(s) with make_valid "
                "(self-intersections and the like; --strict-labels refuses them instead)"
            )
        if self.n_read_errors:
            out.append(f"{self.n_read_errors} raster read(s) hit unreadable blocks, mapped as nodata")
        out += [f"warning: {w}" for w in self.warnings]
        return out


WATER_INDEX = "water-index"


@dataclass
class ExportOptions(_Serialisable):
    """Options of ``export_training_data`` (JSON-serialisable for the QGIS worker).

    labels: a vector file of water polygons (any CRS), a mask raster (any grid; water where
    value > ``mask_threshold``, nodata = unlabelled) or ``"water-index"``.
    block_size: chips per side of a spatial block; blocks, not chips, go to train or valid.
    empty_policy: what to do with chips without water: "keep" all, "drop" all, or "cap"
    them at ``empty_cap`` of each split's chips (seeded choice).
    max_nodata_fraction: chips with more nodata than this are not written.
    strict_labels: refuse invalid label polygons (default: repair with make_valid, counted).
    on_read_error: "fail" on an unreadable raster block, or "skip" it as nodata (counted).
    """

    raster: str
    out_dir: str
    labels: str
    label_layer: str | None = None
    label_where: str | None = None
    bands: list[int] | None = None
    preset: str | None = None
    resolution: float | None = None
    green: int | None = None
    nir: int | None = None
    swir: int | None = None
    size: int = 224
    overlap: int = 0
    min_object_pixels: int = 16
    max_objects: int = 0
    mask_threshold: float = 0.0
    vae: str | None = None
    allow_custom_vae: bool = False
    valid_fraction: float = 0.2
    block_size: int = 4
    seed: int = 0
    empty_policy: str = "cap"
    empty_cap: float = 0.2
    max_nodata_fraction: float = 0.5
    prefix: str = PREFIX
    label: str = LABEL
    overwrite: bool = False
    strict_labels: bool = False  # refuse invalid label polygons instead of repairing them
    on_read_error: str = "fail"  # "skip": unreadable raster blocks become nodata (counted)
