"""The data flows one way: the import-linter layers contract in pyproject.toml holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_areas_import_only_down_the_data_flow():
    result = _lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contract_sees_the_imports(tmp_path):
    """Turned upside down, the same layers must fail: the checker reads the real import graph."""
    config = tmp_path / "upside_down.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "headway"\n\n[[tool.importlinter.contracts]]\n'
        'name = "upside down"\ntype = "layers"\nlayers = ["headway.sim", "headway.policy"]\n'
    )
    result = _lint(config)
    assert result.returncode != 0 and "headway.policy" in result.stdout
