"""One resumable output folder: identity check, partial area, atomic publish, --resume/--overwrite.

Every long job that writes a folder goes through `RunDir`, so they all answer a kill, a rerun and a
changed setting the same way. Two layouts:

- staged (collection, labelling, rollout sessions): the work happens in `<out>.partial/` beside the
  output, which holds the identity file and whatever the job stages; `publish(build)` renames the
  finished folder onto `<out>` in one step and removes the partial area. `<out>` is either absent or
  complete, and an old output is replaced only once the new one is whole.
- in place (reward-model and RL training, the demo): `<out>` holds the identity file and the job's
  checkpoints, and the job resumes from its own last checkpoint.

`open(resume, overwrite)` answers, the same for every job:
- nothing there: "fresh".
- an interrupted run: `--resume` continues it if its settings equal this run's ("resume"; the error
  names every setting that differs), `--overwrite` starts over, neither is an error naming both.
- a finished output (staged) with these settings: `--resume` keeps it ("complete"), `--overwrite`
  redoes it; with other settings, only `--overwrite` replaces it. An interrupted run beside an
  output takes precedence: its output was published in part, or the run was killed while cleaning up.
- a folder holding something else: an error; it is never deleted.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from headway.atomic import atomic_write_json, read_json, replace_folder
from headway.errors import HeadwayError

State = Literal["fresh", "resume", "complete"]


def partial_dir(out: Path) -> Path:
    """Where a staged job works before its output is published."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def differences(wanted: dict, found: dict, formats: dict[str, Callable[[Any], str]] | None = None) -> list[str]:
    """One line per setting whose value differs: 'key: <there> there, <now> now', each value shown
    by its `formats` entry (as a user would type it) or its repr, cut to 60 characters."""
    def short(key: str, value: Any) -> str:
        text = (formats or {}).get(key, repr)(value)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{key}: {short(key, found.get(key))} there, {short(key, wanted.get(key))} now"
            for key in sorted(set(wanted) | set(found)) if wanted.get(key) != found.get(key)]


def with_defaults(defaults: dict, found: dict) -> dict:
    """`found` with the settings it lacks (at any depth of nested dicts) taken from `defaults`."""
    merged = defaults | found
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(found.get(key), dict):
            merged[key] = with_defaults(value, found[key])
    return merged


class RunDir:
    """The output folder of one job run; see the module docstring.

    out: the output folder; job: what runs, for messages ("collection", "RL run");
    identity: what a resumed or kept run must share with this one (JSON-serialisable);
    identity_file: its file name in the work area; finished: for a staged job, reads the identity
    of a finished output at `out` (None when `out` holds something else), None for an in-place job;
    defaults: identity values for settings added since older runs were written (the old behaviour);
    flag: the command-line flag naming `out`, and formats: how to show a setting's value, for messages;
    older: for an in-place job, reads the settings of a folder written before it had `identity_file`
    (None: such a folder is not one of this job's); the file is written when that run resumes.
    """

    def __init__(
        self,
        out: Path,
        *,
        job: str,
        identity: dict,
        identity_file: str,
        finished: Callable[[Path], dict | None] | None = None,
        defaults: dict | None = None,
        flag: str = "--out",
        formats: dict[str, Callable[[Any], str]] | None = None,
        older: Callable[[Path], dict | None] | None = None,
    ) -> None:
        self.out = Path(out)
        self.job, self.identity, self.identity_file, self.flag = job, identity, identity_file, flag
        self.finished, self.defaults, self.formats, self.older = finished, defaults or {}, formats or {}, older
        self.staged = finished is not None

    @property
    def work(self) -> Path:
        """The folder the job writes into while it runs."""
        return partial_dir(self.out) if self.staged else self.out

    def open(self, resume: bool = False, overwrite: bool = False) -> State:
        """Check `out` (and the partial area) against this run and prepare the work area."""
        if self.out.exists() and not self.out.is_dir():
            raise HeadwayError(f"{self.flag} {self.out} is a file; pass a folder")
        state = self._open_staged(resume, overwrite) if self.staged else self._open_in_place(resume, overwrite)
        if state != "complete":
            self.work.mkdir(parents=True, exist_ok=True)
            if not (self.work / self.identity_file).exists():  # fresh, or resumed from a folder older than the file
                atomic_write_json(self.work / self.identity_file, self.identity)
        return state

    def publish(self, build: Path, done: bool = True) -> None:
        """Staged jobs: make the finished folder `build` the output (replacing an old one only once
        `build` is whole), then remove the partial area; done=False keeps it, for a run stopped early
        whose output so far is published and which --resume continues (a rollout session)."""
        replace_folder(build, self.out)
        if done:
            shutil.rmtree(self.work, ignore_errors=True)

    def discard_if_empty(self, staged: Callable[[Path], bool]) -> None:
        """After a failure: remove the partial area when `staged(work)` says it holds nothing worth resuming."""
        if self.staged and self.work.exists() and not staged(self.work):
            shutil.rmtree(self.work, ignore_errors=True)

    # -- the two layouts ---------------------------------------------------------------------------
    def _open_staged(self, resume: bool, overwrite: bool) -> State:
        partial = self.work
        found = None
        if self.out.exists() and any(self.out.iterdir()):
            found = self.finished(self.out)
            if found is None:
                raise HeadwayError(
                    f"{self.flag} {self.out} holds other files, not the output of a headway {self.job}; "
                    f"choose another {self.flag}"
                )
            found = with_defaults(self.defaults, found)
        if partial.exists():  # an interrupted run (its output may be published in part, or not yet cleaned up)
            if overwrite:
                shutil.rmtree(partial)
                return "fresh"
            self._check_resumable(partial, self._saved(partial), resume, f"an interrupted {self.job} is in {partial}")
            return "resume"
        if found is None or overwrite:
            return "fresh"
        if found != self.identity:
            raise HeadwayError(
                f"{self.out} holds the output of a {self.job} with other settings ({'; '.join(differences(self.identity, found, self.formats))}); "
                f"pass --overwrite to replace it, or choose another {self.flag}"
            )
        if not resume:
            raise HeadwayError(
                f"{self.out} already holds the output of this {self.job}; pass --resume to keep it or --overwrite to redo it"
            )
        return "complete"

    def _open_in_place(self, resume: bool, overwrite: bool) -> State:
        if not (self.out.exists() and any(self.out.iterdir())):
            return "fresh"
        saved = self.out / self.identity_file
        found = read_json(saved) if saved.exists() else self.older(self.out) if self.older else None
        if found is None:
            raise HeadwayError(
                f"{self.flag} {self.out} holds other files and no {self.identity_file}, so not a headway {self.job}; "
                f"choose another {self.flag}"
            )
        if overwrite:
            for item in self.out.iterdir():
                shutil.rmtree(item) if item.is_dir() else item.unlink()
            return "fresh"
        self._check_resumable(self.out, with_defaults(self.defaults, found), resume, f"{self.out} already holds a {self.job}")
        return "resume"

    def _saved(self, folder: Path) -> dict:
        """The settings file in `folder`, with settings added since filled from the defaults ({} if missing)."""
        saved = folder / self.identity_file
        return with_defaults(self.defaults, read_json(saved)) if saved.exists() else {}

    def _check_resumable(self, folder: Path, found: dict, resume: bool, there: str) -> None:
        if not resume:
            raise HeadwayError(f"{there}; pass --resume to continue it or --overwrite to start over")
        if found != self.identity:
            raise HeadwayError(
                f"--resume: the {self.job} in {folder} used other settings ({'; '.join(differences(self.identity, found, self.formats))}); "
                "repeat its settings, pass --overwrite to start over, or choose another " + self.flag
            )
