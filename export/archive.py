"""One zip of an export, for sending as a single Telegram document."""

from __future__ import annotations

import zipfile
from pathlib import Path

from export.run import ExportResult


def zip_export(result: ExportResult, path: Path) -> Path:
    """Zip every file of `result` into `path`, by its place in the export (redcap/…)."""
    path.touch(mode=0o600)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in result.files:
            archive.write(file, arcname=file.relative_to(result.directory).as_posix())
    return path
