"""Training logs that survive a kill: CSV rows up to a checkpoint, then appended one flush at a time."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def read_rows(path: Path, up_to_step: int) -> list[dict]:
    """Rows of a log written before a crash, up to `up_to_step` (a torn last line is dropped)."""
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                if None not in row.values() and int(float(row["step"])) <= up_to_step:
                    rows.append(row)
            except (TypeError, ValueError):
                continue
    return rows


class CsvLog:
    """Append-only CSV that a resumed run rewrites up to its checkpoint first."""

    def __init__(self, path: Path, columns: list[str], keep_rows: list[dict]) -> None:
        self.path, self.columns = path, columns
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(keep_rows)
        os.replace(tmp, path)
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, columns)

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row[k] for k in self.columns})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
