"""The package installs as one import package and never hides Hugging Face `datasets`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headway.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_lerobot_dataset_and_headway_datasets_import_together():
    import datasets as hf_datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    import headway.datasets
    from headway.datasets.reader import DatasetReader

    assert hasattr(hf_datasets, "load_dataset"), "Hugging Face datasets was shadowed"
    assert Path(headway.datasets.__file__).parent == ROOT / "headway" / "datasets"
    assert LeRobotDataset and DatasetReader


def test_the_repository_root_hides_no_library():
    """Every area lives inside the `headway` package, so `python -c` from the checkout's root gets
    Hugging Face's `datasets` (lerobot needs it), not a folder of ours."""
    code = "import datasets; print(datasets.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "site-packages" in result.stdout


def _subcommand_paths(parser, prefix=()):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield prefix + (name,)
            yield from _subcommand_paths(sub, prefix + (name,))


@pytest.mark.parametrize("path", list(_subcommand_paths(build_parser())), ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    assert "usage: headway" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run(["headway", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "sim" in result.stdout
