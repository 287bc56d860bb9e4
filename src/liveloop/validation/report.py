"""The gate's verdict on one batch, as JSON for machines and markdown for the person on call."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ValidationReport:
    batch: str
    day: str | None
    checked_at: str
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # checks that could not run, with why (never silent)
    rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def to_markdown(self) -> str:
        verdict = "ACCEPTED" if self.ok else f"REJECTED ({len(self.failures)} problems)"
        lines = [
            f"# Validation report: {Path(self.batch).name}",
            "",
            f"- verdict: **{verdict}**",
            f"- batch: `{self.batch}`",
            f"- day: {self.day or 'unknown'}",
            f"- checked at: {self.checked_at} UTC ({self.elapsed_s:.2f} s)",
            f"- rows: {', '.join(f'{t} {n}' for t, n in self.rows.items()) or 'none readable'}",
            "",
        ]
        if self.failures:
            lines += ["## Problems", "", *(f"- {f}" for f in self.failures), ""]
        if self.skipped:
            lines += ["## Not checked", "", *(f"- {s}" for s in self.skipped), ""]
        return "\n".join(lines)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write report.json and report.md into folder, never overwriting a file already there."""
        folder.mkdir(parents=True, exist_ok=True)
        json_path, md_path = unused_path(folder / "report.json"), unused_path(folder / "report.md")
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        md_path.write_text(self.to_markdown())
        return json_path, md_path


def unused_path(path: Path) -> Path:
    """path itself if free, else a sibling with .1, .2, ... (before a file's extension, after a folder's name)."""
    if not path.exists():
        return path
    n = 1
    while True:
        name = f"{path.name}.{n}" if path.is_dir() else f"{path.stem}.{n}{path.suffix}"
        candidate = path.with_name(name)
        if not candidate.exists():
            return candidate
        n += 1
