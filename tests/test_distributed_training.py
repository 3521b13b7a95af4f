"""Reward-model training under torchrun: two CPU processes (gloo) train one model, rank 0 alone writes,
and a run killed after a checkpoint resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from headway import distributed
from headway.atomic import file_mode

# One training process, launched twice by torchrun: it trains `a` straight through, then `b`
# interrupted right after its step-2 checkpoint (every rank stops there, as after a kill), then
# resumes `b`. Each rank dumps its weights at every checkpoint and logs every file it renames
# into place (all of headway's writes end in os.replace). One launch for the three runs keeps the
# test short: process start-up and imports are most of its time on two cores.
SCRIPT = r"""
import json, os, sys
from pathlib import Path

os.umask(0o022)
dataset, root = Path(sys.argv[1]), Path(sys.argv[2])
import torch
from headway import distributed
import headway.reward.train as train

rank = int(os.environ["RANK"])
replace, save_state = os.replace, train._save_state
phase = {"dumps": None, "stop": 0}


class Interrupted(Exception):
    pass


def logged_replace(source, target, *args, **kwargs):
    with open(root / f"writes_rank{rank}.txt", "a") as log:
        log.write(str(target) + "\n")
    return replace(source, target, *args, **kwargs)


def dumping_save_state(path, net, optimizer, schedule, sampler, step, config, device):
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, phase["dumps"] / f"rank{rank}_step{step}.pt")
    save_state(path, net, optimizer, schedule, sampler, step, config, device)
    if step == phase["stop"]:
        distributed.barrier()  # rank 0's state is on disk
        raise Interrupted


os.replace, train._save_state = logged_replace, dumping_save_state


def run(name, stop=0, resume=False):
    phase["dumps"], phase["stop"] = root / f"dumps_{name}", stop
    phase["dumps"].mkdir(parents=True, exist_ok=True)
    config = train.TrainConfig(datasets=[dataset], out=root / name, image_size=32, steps=4, dim=32, segments=3, segment=8,
                               window=4, ensemble=2, checkpoint_every=2, seed=7, device="cpu")
    summary = train.train_reward_model(config, resume=resume, progress=False)
    (phase["dumps"] / f"summary_rank{rank}.json").write_text(json.dumps(summary))


run("a")
try:
    run("b", stop=2)
except Interrupted:
    (root / f"interrupted_rank{rank}").write_text(str((root / "b" / "model.safetensors").exists()))
run("b", resume=True)
"""


def _torchrun(script: Path, dataset: Path, root: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(dataset), str(root)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=root)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_train_one_model_and_resume_exactly(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "train_rank.py"
    script.write_text(SCRIPT)
    result = _torchrun(script, tiny_dataset, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    dumps = tmp_path / "dumps_a"
    for step in (2, 4):
        rank0, rank1 = _weights(dumps / f"rank0_step{step}.pt"), _weights(dumps / f"rank1_step{step}.pt")
        assert _same(rank0, rank1), f"the ranks' weights differ after step {step}"
    assert not _same(_weights(dumps / "rank0_step2.pt"), _weights(dumps / "rank0_step4.pt")), "no update happened"
    summaries = [json.loads((dumps / f"summary_rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in summaries] == [2, 2] and [s["rank"] for s in summaries] == [0, 1]
    assert summaries[0]["final_loss"] == summaries[1]["final_loss"], "the logged loss is the whole batch's on every rank"

    # rank 0 alone wrote checkpoints and training states; rank 1 wrote nothing
    assert not (tmp_path / "writes_rank1.txt").exists(), (tmp_path / "writes_rank1.txt").read_text()
    written = {Path(p).name for p in (tmp_path / "writes_rank0.txt").read_text().split()}
    assert {"model.safetensors", "config.json", "training.json", "train_state.pt"} <= written
    state = torch.load(tmp_path / "a" / "train_state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["ranks"][0]["sampler_rng"] != state["ranks"][1]["sampler_rng"], "the ranks draw different segments"
    # ... readable by other users, as lerobot's files are (the script runs under umask 022)
    for path in (tmp_path / "a").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, f"{path} is not readable by others"

    # interrupted right after the step-2 checkpoint, then resumed: the same weights as the straight run
    assert [(tmp_path / f"interrupted_rank{r}").read_text() for r in (0, 1)] == ["False", "False"]
    assert _same(load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors"))
    assert _same(_weights(dumps / "rank1_step4.pt"), _weights(tmp_path / "dumps_b" / "rank1_step4.pt"))


def test_without_a_launcher_nothing_is_initialised(monkeypatch):
    for name in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched()
    with distributed.session("cpu") as device:
        assert device == torch.device("cpu")
        assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
        assert not distributed.active()
        distributed.barrier()  # a no-op
        assert distributed.all_gather_object({"x": 1}) == [{"x": 1}]
        assert distributed.share(5) == (0, 5)


def test_a_world_of_one_under_torchrun_is_a_single_process(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not distributed.launched()


def test_batches_split_over_ranks_sum_to_the_single_process_batch(monkeypatch):
    shares = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: 3)
        shares.append(distributed.share(8))
    assert shares == [(0, 3), (3, 3), (6, 2)]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_file_mode_follows_the_umask(umask):
    previous = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask
    finally:
        os.umask(previous)
