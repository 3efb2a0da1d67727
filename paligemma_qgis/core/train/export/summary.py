"""What an export wrote: counts, codec round-trip scores and warnings (JSON for the QGIS worker)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...serial import to_data


@dataclass
class ExportSummary:
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

    def to_dict(self) -> dict[str, object]:
        return to_data(self)

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
