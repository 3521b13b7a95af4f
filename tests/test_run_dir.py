"""RunDir: the one resumable-output-folder mechanism every long job uses (headway/run_dir.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headway.errors import HeadwayError
from headway.run_dir import RunDir, partial_dir, with_defaults


def _finished(out: Path) -> dict | None:
    card = out / "card.json"
    return json.loads(card.read_text()) if card.exists() else None


def staged(out: Path, **identity) -> RunDir:
    return RunDir(out, job="test job", identity={"seed": 0, **identity}, identity_file="id.json", finished=_finished)


def publish(run: RunDir, done: bool = True) -> None:
    build = run.work / "build"
    build.mkdir()
    (build / "card.json").write_text(json.dumps(run.identity))
    run.publish(build, done=done)


def test_staged_job_fresh_interrupted_resumed_published(tmp_path):
    out = tmp_path / "out"
    run = staged(out)
    assert run.open() == "fresh" and run.work == partial_dir(out) and not out.exists()
    assert json.loads((run.work / "id.json").read_text()) == {"seed": 0}
    with pytest.raises(HeadwayError, match=r"interrupted test job.*--resume.*--overwrite"):
        staged(out).open()
    with pytest.raises(HeadwayError, match="seed: 0 there, 1 now"):
        staged(out, seed=1).open(resume=True)
    assert staged(out).open(resume=True) == "resume"
    publish(run)
    assert not partial_dir(out).exists() and _finished(out) == {"seed": 0}


def test_staged_job_finished_output_is_kept_replaced_or_refused(tmp_path):
    out = tmp_path / "out"
    run = staged(out)
    run.open()
    publish(run)
    with pytest.raises(HeadwayError, match="already holds the output of this test job; pass --resume"):
        staged(out).open()
    assert staged(out).open(resume=True) == "complete"
    with pytest.raises(HeadwayError, match=r"other settings \(seed: 0 there, 2 now\); pass --overwrite"):
        staged(out, seed=2).open(resume=True)
    replacing = staged(out, seed=2)
    assert replacing.open(overwrite=True) == "fresh"
    assert _finished(out) == {"seed": 0}, "the old output stays until the new one is whole"
    publish(replacing)
    assert _finished(out) == {"seed": 2}


def test_a_run_published_in_part_resumes_before_it_counts_as_finished(tmp_path):
    out = tmp_path / "out"
    run = staged(out)
    run.open()
    publish(run, done=False)
    assert partial_dir(out).exists() and staged(out).open(resume=True) == "resume"


def test_foreign_folders_are_refused_and_never_deleted(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for run in (staged(out), RunDir(out, job="test job", identity={}, identity_file="id.json")):
        with pytest.raises(HeadwayError, match="holds other files"):
            run.open(overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(HeadwayError, match="is a file"):
        staged(tmp_path / "file").open()


def test_in_place_job_resumes_overwrites_and_fills_new_settings_with_defaults(tmp_path):
    out = tmp_path / "run"

    def run(**identity) -> RunDir:
        return RunDir(out, job="test run", identity={"lr": 1, "sac": {"tau": 1, "new": 0}, **identity},
                      identity_file="config.json", defaults={"sac": {"new": 0}})

    assert run().open() == "fresh" and run().work == out
    (out / "config.json").write_text(json.dumps({"lr": 1, "sac": {"tau": 1}}))  # written before "new" existed
    (out / "checkpoint").write_text("step 5")
    with pytest.raises(HeadwayError, match="already holds a test run; pass --resume"):
        run().open()
    assert run().open(resume=True) == "resume" and (out / "checkpoint").exists()
    with pytest.raises(HeadwayError, match=r"lr: 1 there, 2 now"):
        run(lr=2).open(resume=True)
    assert run(lr=2).open(overwrite=True) == "fresh" and not (out / "checkpoint").exists()
    assert json.loads((out / "config.json").read_text())["lr"] == 2


def test_with_defaults_fills_nested_settings():
    assert with_defaults({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 5}}) == {"a": 1, "b": {"c": 5, "d": 3}}


def test_an_in_place_folder_older_than_its_settings_file_resumes_from_the_settings_it_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state").write_text(json.dumps({"lr": 1}))  # where an older version kept its settings

    def run(lr: int) -> RunDir:
        return RunDir(out, job="test run", identity={"lr": lr}, identity_file="config.json",
                      older=lambda folder: json.loads((folder / "state").read_text()) if (folder / "state").exists() else None)

    with pytest.raises(HeadwayError, match="lr: 1 there, 2 now"):
        run(2).open(resume=True)
    assert run(1).open(resume=True) == "resume" and json.loads((out / "config.json").read_text()) == {"lr": 1}
