"""Behaviour cloning of action chunks with RA-BC weights: data, loss, checkpoints, evaluation in the env."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from headway.errors import HeadwayError
from headway.policy.bc import BCConfig, BCNet, BCPolicy, per_sample_loss, train_bc, weight_shares, weighted_loss
from headway.runtime import torch_threads
from headway.policy.bc_data import load_bc_samples, read_progress, write_progress
from headway.policy.evaluate import evaluate_policy
from headway.policy.interface import Policy, load_policy


@pytest.fixture(scope="module")
def samples(tiny_dataset):
    return load_bc_samples(tiny_dataset, chunk=4, progress=False)


@pytest.fixture(scope="module")
def labels(tiny_dataset, samples, tmp_path_factory):
    """Progress labels in LeRobot's schema: rising on the first episodes, falling on the last."""
    lengths = samples.episode_lengths
    progress = {e: np.linspace(0, 1, n) for e, n in lengths.items()}
    last = max(lengths)
    progress[last] = np.linspace(1, 0, lengths[last])  # regress: its frames must get weight 0
    return write_progress(tmp_path_factory.mktemp("labels") / "lift_tiny.labels", progress)


@pytest.fixture(scope="module")
def trained(tiny_dataset, labels, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "bc"
    config = BCConfig(dataset=tiny_dataset, out=out, chunk=4, steps=30, batch_size=64, hidden=32, layers=2, weights="rabc", labels=labels)
    return out, train_bc(config, progress=False)


def test_samples_are_chunks_padded_with_the_last_action_and_masked(tiny_dataset, samples):
    assert samples.state_keys == ("observation.state", "observation.environment_state")
    assert samples.state.shape == (len(samples), sum(samples.state_dims)) and samples.state_dims[0] == 9
    assert samples.actions.shape == (len(samples), 4, 7)
    last = np.flatnonzero(samples.episode_index == samples.episode_index[0])[-1]
    assert samples.action_mask[last].tolist() == [True, False, False, False]
    assert np.allclose(samples.actions[last], samples.actions[last, 0])
    assert np.allclose(samples.actions[last - 1, 1], samples.actions[last, 0])  # chunk t holds a_t, a_t+1, ...
    assert samples.action_mask[0].all()


def test_loss_decreases_on_a_fixed_batch(samples):
    torch.manual_seed(0)
    net = BCNet(samples.state.shape[1], 7, 4, hidden=64, layers=2)
    net.set_statistics(samples.state, samples.actions.reshape(-1, 7))
    state = torch.from_numpy(samples.state[:64])
    target = net.normalise_actions(torch.from_numpy(samples.actions[:64]))
    mask = torch.from_numpy(samples.action_mask[:64]).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    with torch_threads(1):
        for _ in range(60):
            loss = weighted_loss(per_sample_loss(net(state), target, mask), None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_weighted_loss_ignores_zero_weight_samples():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    weights = torch.tensor([1.0, 0.0, 0.5, 0.0])
    value = weighted_loss(losses, weights)
    changed = weighted_loss(torch.tensor([1.0, 100.0, 3.0, -7.0]), weights)
    assert float(value.detach()) == pytest.approx(float(changed))
    assert float(value.detach()) == pytest.approx((1.0 * 1 + 0.5 * 3) / 1.5, rel=1e-4)  # = sum w l / sum w
    value.backward()
    assert losses.grad[1] == 0 and losses.grad[3] == 0 and losses.grad[0] > 0
    assert float(weighted_loss(losses, None).detach()) == pytest.approx(2.5)


def test_rabc_training_logs_weights_and_zero_weights_regressing_frames(trained, samples):
    _, summary = trained
    assert 0 < summary["zero_share"] < 1 and 0 < summary["mean_weight"] < 1 and summary["full_share"] > 0
    last = samples.episode_index == max(samples.episode_lengths)
    # The falling episode is the only one with negative deltas: its share of frames bounds the zero share.
    assert summary["zero_share"] <= last.mean() + 1e-6
    # the falling episode keeps less than its share of the samples; shares over episodes sum to 1
    shares = {int(e): v for e, v in summary["weight_share_by_episode"].items()}
    assert shares[max(samples.episode_lengths)] < last.mean() and abs(sum(shares.values()) - 1) < 1e-9
    assert 0 < summary["effective_sample_share"] < 1


def test_weight_shares_of_uniform_and_concentrated_weights():
    episode_index = np.array([0, 0, 0, 1])
    uniform = weight_shares(np.ones(4), episode_index)
    assert uniform["effective_sample_share"] == pytest.approx(1.0)
    assert uniform["weight_share_by_episode"] == pytest.approx({0: 0.75, 1: 0.25})
    one = weight_shares(np.array([0.0, 0.0, 0.0, 2.0]), episode_index)
    assert one["effective_sample_share"] == pytest.approx(0.25) and one["weight_share_by_episode"] == pytest.approx({0: 0.0, 1: 1.0})


def test_checkpoint_round_trip_gives_the_same_actions(trained, samples):
    out, _ = trained
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "headway.bc" and meta["task"] == "lift" and meta["state_dims"][0] == 9
    first = load_policy(out, device="cpu")
    assert isinstance(first, BCPolicy) and isinstance(first, Policy)
    observation = {"images": {}, "state": samples.state[5, :9], "object": samples.state[5, 9:]}
    copy = out.parent / "copy"
    first.save(copy)
    second = BCPolicy.load(copy, device="cpu")
    first.reset(), second.reset()
    for _ in range(6):  # through the temporal ensemble, past one chunk
        a, b = first.act(observation), second.act(observation)
        assert a.shape == (7,) and a.dtype == np.float32
        assert np.allclose(a, b, atol=1e-6)
    assert np.allclose(first.predict_chunk(observation), second.predict_chunk(observation))


def test_wrong_task_or_layout_is_a_clear_error(trained, samples, tmp_path):
    out, _ = trained
    other = tmp_path / "stack_policy"
    shutil.copytree(out, other)
    meta = json.loads((other / "config.json").read_text())
    meta["task"] = "stack"
    (other / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HeadwayError, match="task 'stack', not 'lift'"):
        BCPolicy.load(other, task="lift")
    with pytest.raises(HeadwayError, match="trained for task 'stack'"):
        evaluate_policy(load_policy(other), "lift", episodes=1, progress=False)
    policy = load_policy(out)
    with pytest.raises(HeadwayError, match="another robot or task layout"):
        policy.act({"images": {}, "state": np.zeros(8, np.float32), "object": samples.state[0, 9:]})
    from types import SimpleNamespace

    import gymnasium as gym

    from headway.policy.evaluate import check_policy_fits

    def fake_env(object_dim: int, action_dim: int = 7):
        box = lambda n: gym.spaces.Box(-1, 1, (n,))  # noqa: E731
        return SimpleNamespace(observation_space={"state": box(9), "object": box(object_dim)}, action_space=box(action_dim))

    check_policy_fits(policy, "lift", fake_env(policy.object_dim))
    with pytest.raises(HeadwayError, match="another task layout"):
        check_policy_fits(policy, "lift", fake_env(policy.object_dim + 4))
    with pytest.raises(HeadwayError, match="outputs 7 action values; lift takes 6"):
        check_policy_fits(policy, "lift", fake_env(policy.object_dim, 6))
    meta["task"], meta["state_dims"] = "lift", [9, 3]
    (other / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HeadwayError, match="does not match its config"):
        BCPolicy.load(other)


def test_labels_that_do_not_match_the_dataset_are_refused(tiny_dataset, samples, tmp_path):
    lengths = samples.episode_lengths
    progress = {e: np.linspace(0, 1, n) for e, n in lengths.items()}
    first = min(lengths)
    progress[first] = progress[first][:-3]
    bad = write_progress(tmp_path / "bad", progress)
    with pytest.raises(HeadwayError, match=f"episode {first} has {lengths[first] - 3} labelled frames but the dataset has {lengths[first]}"):
        read_progress(bad, lengths)
    del progress[first]
    with pytest.raises(HeadwayError, match=f"no progress for episode {first}"):
        read_progress(write_progress(tmp_path / "missing", progress), lengths)
    with pytest.raises(HeadwayError, match="needs progress labels"):
        BCConfig(dataset=tiny_dataset, out=tmp_path / "x", weights="rabc")
    with pytest.raises(HeadwayError, match="has no sarm_progress.parquet"):
        train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "x", weights="rabc", labels=tmp_path, steps=1), progress=False)


def _success_labels(folder, lengths: dict[int, int], final: dict[int, float], dataset):
    """A headway label folder of `dataset` whose success probability rises to `final[e]` on the last frame of episode e."""
    import pandas as pd

    from headway.reward.label_inputs import dataset_fingerprint

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.json").write_text(json.dumps({"identity": {"dataset": str(dataset), "dataset_fingerprint": dataset_fingerprint(dataset)}}))
    rows = [(e, t, final[e] * t / (n - 1)) for e, n in lengths.items() for t in range(n)]
    pd.DataFrame(rows, columns=["episode_index", "frame_index", "success"]).to_parquet(folder / "labels.parquet")
    return folder


def test_success_filtering_clones_only_the_episodes_the_labels_call_successful(tiny_dataset, samples, tmp_path):
    lengths = samples.episode_lengths
    episodes = sorted(lengths)
    final = {e: 0.9 if e == episodes[1] else 0.1 for e in episodes}
    labels = _success_labels(tmp_path / "labels", lengths, final, tiny_dataset)
    summary = train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "bc", chunk=4, steps=2, batch_size=16, hidden=16, layers=1,
                                weights="success", labels=labels), progress=False)
    assert summary["episodes"] == 1 and summary["kept_episodes"] == 1 and summary["dropped_episodes"] == [e for e in episodes if e != episodes[1]]
    assert json.loads((tmp_path / "bc" / "config.json").read_text())["train"]["episode_ids"] == [episodes[1]]
    assert summary["samples"] == lengths[episodes[1]]

    with pytest.raises(HeadwayError, match="needs a `headway label` folder"):
        BCConfig(dataset=tiny_dataset, out=tmp_path / "x", weights="success")
    with pytest.raises(HeadwayError, match="call none of the .* episodes successful"):
        train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "x", weights="success", steps=1,
                          labels=_success_labels(tmp_path / "none", lengths, dict.fromkeys(episodes, 0.2), tiny_dataset)), progress=False)
    short = dict(lengths) | {episodes[0]: lengths[episodes[0]] - 2}
    with pytest.raises(HeadwayError, match=f"episode {episodes[0]} has {lengths[episodes[0]] - 2} labelled frames"):
        train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "x", weights="success", steps=1,
                          labels=_success_labels(tmp_path / "short", short, final, tiny_dataset)), progress=False)
    with pytest.raises(HeadwayError, match="not a headway label folder"):
        train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "x", weights="success", labels=tmp_path / "bc", steps=1), progress=False)


def test_labels_of_another_dataset_are_refused_unless_forced(tiny_dataset, samples, tmp_path):
    other = tmp_path / "other_data"
    shutil.copytree(tiny_dataset, other)
    info = json.loads((other / "meta" / "info.json").read_text())
    (other / "meta" / "info.json").write_text(json.dumps(info | {"robot_type": "someone_else"}))  # same frames, another dataset
    lengths = samples.episode_lengths
    labels = _success_labels(tmp_path / "labels", lengths, dict.fromkeys(lengths, 0.9), other)
    write_progress(labels / "sarm_progress.parquet", {e: np.linspace(0, 1, n) for e, n in lengths.items()})
    tiny = {"chunk": 4, "steps": 1, "batch_size": 16, "hidden": 16, "layers": 1}
    for weights in ("success", "rabc"):
        with pytest.raises(HeadwayError, match=r"made from dataset .*other_data.*fingerprint .*not from .*fingerprint .*--force"):
            train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / weights, weights=weights, labels=labels, **tiny), progress=False)
        summary = train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / weights, weights=weights, labels=labels, force=True, **tiny),
                           progress=False)
        assert any(note.startswith("--force: the labels") for note in summary["notes"])
    # LeRobot's own progress file carries no fingerprint: it is checked by its frame counts alone
    bare = write_progress(tmp_path / "bare" / "sarm_progress.parquet", {e: np.linspace(0, 1, n) for e, n in lengths.items()})
    assert "notes" not in train_bc(BCConfig(dataset=tiny_dataset, out=tmp_path / "bare_bc", weights="rabc", labels=bare, **tiny), progress=False)


def test_image_policy_runs_in_the_env_through_evaluate_with_a_video(tiny_dataset, tmp_path):
    out = tmp_path / "bc_images"
    summary = train_bc(
        BCConfig(dataset=tiny_dataset, out=out, obs="state+images", views=("agentview",), chunk=3, steps=3, batch_size=16, hidden=32, layers=1, image_dim=16),
        progress=False,
    )
    assert summary["steps"] == 3
    policy = load_policy(out)
    assert policy.views == ("agentview",) and policy.object_dim == 0 and policy.image_size == 32
    report = evaluate_policy(policy, "lift", episodes=2, horizon=6, videos=1, video_dir=tmp_path / "videos", progress=False)
    assert report["episodes"] == 2 and 1 <= report["mean_length"] <= 6
    assert set(report) >= {"success_rate", "mean_return", "mean_dense_return", "mean_length", "per_episode"}
    assert [r["seed"] for r in report["per_episode"]] == [report["seed"], report["seed"] + 1]
    assert len(report["videos"]) == 1 and (tmp_path / "videos").exists()
    import av

    with av.open(report["videos"][0]) as container:
        assert sum(1 for _ in container.decode(video=0)) == report["per_episode"][0]["length"] + 1


def test_cli_trains_and_evaluates(tiny_dataset, labels, tmp_path, capsys):
    from headway.cli import main

    out = tmp_path / "cli_bc"
    assert main(["policy", "bc", "--dataset", str(tiny_dataset), "--out", str(out), "--steps", "2", "--chunk", "3",
                 "--weights", "rabc", "--labels", str(labels.parent)]) == 0
    assert "RA-BC weights: mean" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    assert main(["policy", "eval", "--task", "lift", "--policy", str(out), "--episodes", "1", "--horizon", "4", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["mean_length"] == 4


def test_any_lerobot_dataset_with_state_and_action_trains(tmp_path):
    """A dataset recorded elsewhere: no cameras, no object state, a free-text task."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "foreign"
    features = {
        "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
    }
    dataset = LeRobotDataset.create(repo_id="someone/push", fps=10, root=root, features=features, use_videos=False)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for _ in range(12):
            dataset.add_frame({"observation.state": rng.normal(size=4).astype(np.float32),
                               "action": rng.normal(size=2).astype(np.float32), "task": "push the block"})
        dataset.save_episode()
    dataset.finalize()
    samples = load_bc_samples(root, chunk=3, progress=False)
    assert samples.state_keys == ("observation.state",) and samples.actions.shape == (24, 3, 2)
    train_bc(BCConfig(dataset=root, out=tmp_path / "ckpt", chunk=3, steps=3, hidden=16, layers=1), progress=False)
    policy = load_policy(tmp_path / "ckpt")
    assert (policy.task, policy.state_dim, policy.object_dim, policy.action_dim) == ("push the block", 4, 0, 2)
    assert policy.act({"state": np.zeros(4, np.float32)}).shape == (2,)
    with pytest.raises(HeadwayError, match="no 'action' feature"):
        _without_action(root, tmp_path)


def _without_action(root, tmp_path):
    """The same dataset with its action column dropped must be refused by name."""
    import shutil

    import pyarrow.parquet as pq

    copy = tmp_path / "no_action"
    shutil.copytree(root, copy)
    for file in (copy / "data").rglob("*.parquet"):
        pq.write_table(pq.read_table(file).drop(["action"]), file)
    load_bc_samples(copy, chunk=3, progress=False)
