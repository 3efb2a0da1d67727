"""What a segment run did, as the CLI prints it and the worker sends it back to QGIS."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model.segmenter import EngineInfo
from ..specs import SegmentSpec

if TYPE_CHECKING:
    import pyproj


@dataclass
class SegmentSummary:
    """What a run did; ``to_dict`` is what the worker sends back to QGIS."""

    chips: int  # chips segmented
    skipped: int  # chips skipped for too little valid data
    water_area_km2: float  # summed area of the output polygons
    seconds: float
    chips_per_s: float  # chips / seconds (whole run)
    output: str
    polygons: int = 0
    mask_tif: str | None = None
    engine: str = ""
    device: str | None = None
    scenes: int = 1
    failed: int = 0  # scenes that failed (recorded in the scenes layer)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def one_line(self) -> str:
        region = f"{self.scenes} scenes ({self.failed} failed), " if self.scenes > 1 or self.failed else ""
        kept = self.chips - int(self.details.get("chips_redone", self.chips))
        journal = f", {kept} from the interrupted run's journal" if kept > 0 else ""
        return (
            region + f"{self.chips} chips ({self.skipped} skipped{journal}), {self.polygons} polygons, "
            f"water {self.water_area_km2:.4f} km2, {self.seconds:.1f} s, {self.chips_per_s:.1f} chips/s"
            + (f", device {self.device}" if self.device else "")
        )


def summarise(
    spec: SegmentSpec,
    totals: dict[str, Any],
    *,
    seconds: float,
    info: EngineInfo | None,
    scenes: int,
    failed: int,
    resumed: bool,
    from_journal: int,
    chip_seconds: float,
    redone: int,
    failures: dict[str, str | None],
    failure_infos: dict[str, dict[str, Any]],
    mask: Path | None,
    dst: pyproj.CRS,
) -> SegmentSummary:
    """The summary of a finished run from the output's totals."""
    details = dict(totals.pop("engine") or {})
    details.update(
        chip_seconds=round(chip_seconds, 3),
        chips_redone=redone,
        chip_size=info.chip_size if info else None,
        chips_from_journal=totals["from_journal"],
        read_errors=totals["read_errors"],
        read_errors_by_scene=totals["read_errors_by_scene"],
        unsure_scenes=totals["unsure_scenes"],
        resumed=resumed,
        scenes_from_journal=from_journal,
        failed_scenes=failures,
        failed_scene_errors=failure_infos,  # code, params, field: each front end words them
        output_crs=dst.to_string(),
    )
    if "dissolved_polygons" in totals:
        details["dissolved_polygons"] = totals["dissolved_polygons"]
    return SegmentSummary(
        chips=totals["chips"],
        skipped=totals["skipped"],
        water_area_km2=totals["water_m2"] / 1e6,
        seconds=seconds,
        chips_per_s=redone / seconds if seconds > 0 else 0.0,  # what this run did, not the journal
        output=str(spec.output.path),
        polygons=totals["polygons"],
        mask_tif=str(mask) if mask else None,
        engine=info.name if info else spec.engine.name,
        device=info.device if info else None,
        scenes=scenes,
        failed=failed,
        details=details,
    )
