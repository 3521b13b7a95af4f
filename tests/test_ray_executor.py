"""`--executor ray`: labelling and collection on Ray give the local path's files byte for byte, survive
a dead worker and a killed driver, refuse bad settings clearly, and leave Ray unimported when unused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from headway.reward.label_scoring import stage_scores as labelling_stage
from headway.reward.labelling import CARD_FILE, PROGRESS_FILE, TABLE_FILE, LabelConfig, label_dataset
from headway.errors import HeadwayError
from headway.executors import CRASH_ONCE, RaySession, RaySettings, init_ray, ray_settings
from headway.reward.stage_model import StageModelConfig, StageRewardNet
from headway.reward.stage_reward import StageRewardModel
from headway.run_dir import partial_dir

VIEWS = ("agentview", "robot0_eye_in_hand")
REAL_STAGE = labelling_stage


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = StageModelConfig(
        views=VIEWS, stage_names=("reach", "grasp", "lift"), stage_proportions=(0.5, 0.2, 0.3), image_size=32, dim=32, window=4, ensemble=2
    )
    path = tmp_path_factory.mktemp("models") / "tiny"
    StageRewardModel(StageRewardNet(config), device="cpu").save(path)
    return path


@pytest.fixture(scope="module")
def crash_marker(tmp_path_factory) -> Path:
    """The first actor call of this module's Ray session kills its own worker process (headway.executors)."""
    return tmp_path_factory.mktemp("crash") / "crashed-once"


@pytest.fixture(scope="module")
def ray_cluster(crash_marker):
    """One small local Ray for the module (2 CPUs, no dashboard); headway's runs reuse it."""
    import os

    import ray

    os.environ[CRASH_ONCE] = str(crash_marker)  # reaches the workers through init_ray's runtime_env
    try:
        init_ray(num_cpus=2)
        yield ray
    finally:
        os.environ.pop(CRASH_ONCE, None)
        ray.shutdown()


def _final_files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in (PROGRESS_FILE, TABLE_FILE, CARD_FILE)}


class DriverKilled(BaseException):
    """Stands for a driver killed mid-run (a BaseException, like KeyboardInterrupt, so nothing catches it)."""


class _CountingStage:
    """Wraps labelling's `stage_scores` in the driver: counts writes per episode file, optionally fails after N."""

    def __init__(self, monkeypatch, fail_after: int | None = None) -> None:
        import headway.reward.label_scoring as label_scoring

        self.original, self.fail_after, self.writes = REAL_STAGE, fail_after, []
        monkeypatch.setattr(label_scoring, "stage_scores", self)

    def __call__(self, path, arrays) -> None:
        self.original(path, arrays)
        self.writes.append(Path(path).name)
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            raise DriverKilled()  # what a killed driver leaves: the staged files only


def test_local_labelling_never_imports_ray(tiny_dataset, model_path, tmp_path):
    script = (
        "import sys; from pathlib import Path; from headway.cli import main\n"
        f"main(['label', '--dataset', {str(tiny_dataset)!r}, '--model', {str(model_path)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet'])\n"
        "print('RAY_IMPORTED' if 'ray' in sys.modules else 'RAY_NOT_IMPORTED')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RAY_NOT_IMPORTED" in result.stdout
    assert (tmp_path / "out" / PROGRESS_FILE).exists()


def test_executor_flags_are_validated():
    assert ray_settings(None) is None and ray_settings("local") is None
    with pytest.raises(HeadwayError, match="--executor ray"):
        LabelConfig(dataset="d", model="m", workers=2)
    with pytest.raises(HeadwayError, match="unknown --executor"):
        LabelConfig(dataset="d", model="m", executor="dask")
    with pytest.raises(HeadwayError, match="--workers"):
        ray_settings("ray", workers=0)


def test_unanswered_address_is_named_within_30_s():
    started = time.monotonic()
    with pytest.raises(HeadwayError, match="--address 127.0.0.1:1"):
        init_ray("127.0.0.1:1")  # nothing listens: refused at once
    with pytest.raises(HeadwayError, match="--address"):
        init_ray("not an address!")
    assert time.monotonic() - started < 30


def test_resume_with_everything_staged_needs_no_ray(tiny_dataset, model_path, tmp_path, monkeypatch):
    """A run killed during assembly resumes under --executor ray without reaching Ray (the address is dead)."""
    import headway.reward.labelling as labelling

    def killed(*args, **kwargs):
        raise DriverKilled()

    config = dict(dataset=tiny_dataset, model=model_path, out=tmp_path / "out", chunk_size=5, threads=1)
    monkeypatch.setattr(labelling, "assemble_labels", killed)
    with pytest.raises(DriverKilled):
        label_dataset(LabelConfig(**config), progress=False)
    monkeypatch.undo()
    summary = label_dataset(LabelConfig(**config, executor="ray", address="127.0.0.1:1"), resume=True, progress=False)
    assert summary.scored_episodes == 0 and summary.episodes == 3 and (tmp_path / "out" / PROGRESS_FILE).exists()


def test_ray_labelling_is_byte_identical_to_local_and_survives_a_dead_worker(
    ray_cluster, tiny_dataset, model_path, tmp_path, monkeypatch, crash_marker
):
    reference = tmp_path / "local"
    label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=reference, chunk_size=5, threads=1), progress=False)
    counting = _CountingStage(monkeypatch)
    out = tmp_path / "ray"
    summary = label_dataset(
        LabelConfig(dataset=tiny_dataset, model=model_path, out=out, chunk_size=5, threads=1, executor="ray", workers=2),
        progress=False,
    )
    assert crash_marker.exists(), "the crash hook never fired: the dead-worker path was not exercised"
    assert sorted(counting.writes) == [f"episode_{i:06d}.npz" for i in range(3)], "each episode staged exactly once"
    assert summary.scored_episodes == 3 and not partial_dir(out).exists()
    assert _final_files(out) == _final_files(reference)


def test_killed_ray_driver_resumes_without_rescoring(ray_cluster, tiny_dataset, model_path, tmp_path, monkeypatch):
    reference = tmp_path / "local"
    label_dataset(LabelConfig(dataset=tiny_dataset, model=model_path, out=reference, chunk_size=5, threads=1), progress=False)
    config = LabelConfig(dataset=tiny_dataset, model=model_path, out=tmp_path / "ray", chunk_size=5, threads=1, executor="ray", workers=1)
    _CountingStage(monkeypatch, fail_after=1)
    with pytest.raises(DriverKilled):
        label_dataset(config, progress=False)
    staged = sorted(p.name for p in (partial_dir(config.out) / "episodes").glob("episode_*.npz"))
    assert len(staged) == 1 and not (config.out / CARD_FILE).exists()

    counting = _CountingStage(monkeypatch)
    summary = label_dataset(config, resume=True, progress=False)
    assert summary.scored_episodes == 2 and staged[0] not in counting.writes and len(counting.writes) == 2
    assert _final_files(config.out) == _final_files(reference)


def test_bad_cluster_requests_are_clear(ray_cluster, model_path, tmp_path):
    with pytest.raises(HeadwayError, match="--gpus-per-worker 1: the Ray cluster has no GPUs"):
        with RaySession(RaySettings(workers=1, gpus_per_worker=1)):
            pass
    with pytest.raises(HeadwayError, match="--workers 5 needs 5 CPUs"):
        with RaySession(RaySettings(workers=5)):
            pass
    from headway.reward.ray_labelling import EpisodeScorer, decode_episodes

    unseen = tmp_path / "only-on-the-driver"  # as a driver-local path looks to the other nodes
    mapping = {"agentview": "observation.images.agentview"}
    with pytest.raises(HeadwayError, match=f"the dataset {unseen} is not visible on Ray node .*shared"):
        with RaySession(RaySettings(workers=1)) as session:
            session.run(EpisodeScorer, (str(model_path), "cpu", mapping, 8, 1), [(str(unseen), (0,), list(mapping.values()))],
                        lambda job, result: None, prepare=decode_episodes, progress=False)


def _dataset_files(root: Path) -> dict[str, object]:
    """Every file's bytes; the two JSON files whose text depends on the process are compared as data:
    headway.json records --out, and lerobot writes stats.json's keys in set order (hash seed per process)."""
    files: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            name = str(path.relative_to(root))
            files[name] = path.read_bytes()
            if name in ("meta/headway.json", "meta/stats.json"):
                files[name] = json.loads(path.read_text())
                files[name].get("collect", {}).pop("out", None)
    return files


def test_ray_collection_equals_local_and_resumes(ray_cluster, tiny_dataset, tmp_path, monkeypatch):
    import headway.datasets.collect as collect_module

    out = tmp_path / "ray_lift"
    write = collect_module.atomic_write_bytes
    calls = []

    def interrupted(path, data):  # the driver dies right after staging its first episode
        write(path, data)
        calls.append(Path(path).name)
        raise DriverKilled()

    monkeypatch.setattr(collect_module, "atomic_write_bytes", interrupted)
    with pytest.raises(DriverKilled):
        collect_module.collect(tiny_config(out), progress=False, ray=RaySettings(workers=2))
    assert not out.exists() and len(calls) == 1

    monkeypatch.setattr(collect_module, "atomic_write_bytes", write)
    summary = collect_module.collect(tiny_config(out), resume=True, progress=False, ray=RaySettings(workers=2))
    assert summary.resumed == 1 and summary.episodes == 3
    assert _dataset_files(out) == _dataset_files(tiny_dataset)


def test_ray_policy_eval_gives_the_local_rows_per_seed(ray_cluster, tiny_dataset, tmp_path):
    from headway.policy.bc import BCConfig, train_bc
    from headway.policy.evaluate import evaluate_policy
    from headway.policy.interface import load_policy

    train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "bc", chunk=3, steps=3, hidden=16, layers=1), progress=False)
    policy = load_policy(tmp_path / "bc")
    local = evaluate_policy(policy, "lift", episodes=3, horizon=12, progress=False)
    on_ray = evaluate_policy(policy, "lift", episodes=3, horizon=12, progress=False, ray=RaySettings(workers=2))
    assert on_ray["per_episode"] == local["per_episode"] and on_ray["success_rate"] == local["success_rate"]
