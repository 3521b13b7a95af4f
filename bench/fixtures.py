"""Data and models the bench scripts make for themselves when none are given, kept for reruns."""

from __future__ import annotations

from pathlib import Path


def simulated_dataset(out: Path, progress: bool = True, **settings) -> Path:
    """A dataset collected by `headway sim collect` with `settings` (CollectConfig fields), made once."""
    import json

    from headway.datasets.collect import CollectConfig, collect

    if (out / "meta" / "info.json").exists():  # made before: only if with these settings
        card = out / "meta" / "headway.json"
        recorded = json.loads(card.read_text()).get("collect", {}) if card.exists() else {}
        wanted = json.loads(json.dumps(CollectConfig(out=out, **settings).identity()))
        differ = {k: (recorded[k], v) for k, v in wanted.items() if k != "out" and k in recorded and recorded[k] != v}
        if differ:
            raise SystemExit(f"{out} was collected with other settings ("
                             + "; ".join(f"{k}: {old} there, {new} asked" for k, (old, new) in differ.items())
                             + "); pass another work folder or remove it")
    else:
        print(f"collecting {settings.get('episodes')} {settings.get('task', 'lift')} episodes into {out} ...", flush=True)
        print(collect(CollectConfig(out=out, **settings), resume=True, progress=progress).render())
    return out


def trained_reward_model(out: Path, datasets: list[Path], progress: bool = True, **settings) -> Path:
    """A stage-aware reward model trained with `settings` (TrainConfig fields), made once."""
    from headway.reward.train import TrainConfig, train_reward_model

    if not (out / "config.json").exists():  # written last, once the model is whole
        print(f"training a reward model ({settings.get('steps')} steps) into {out} ...", flush=True)
        summary = train_reward_model(TrainConfig(datasets=datasets, out=out, **settings), resume=True, progress=progress)
        print(f"reward model: {summary['steps']} steps, final loss {summary['final_loss']:.3f}, {summary['seconds']:.0f} s")
    return out


def trained_keypoint_model(out: Path, datasets: list[Path], progress: bool = True, **settings) -> Path:
    """A keypoint heatmap model trained with `settings` (KeypointTrainConfig fields), made once.

    Training keeps `train_state.pt` for resuming; it is removed once training ends, so a model
    counts as made when its config.json exists and no train state is left.
    """
    from headway.perception.keypoint_train import STATE_FILE, KeypointTrainConfig, train_keypoint_model

    if not (out / "config.json").exists() or (out / STATE_FILE).exists():
        print(f"training a keypoint model ({settings.get('steps')} steps) into {out} ...", flush=True)
        summary = train_keypoint_model(KeypointTrainConfig(datasets=datasets, out=out, **settings), resume=True, progress=progress)
        (out / STATE_FILE).unlink(missing_ok=True)
        print(f"keypoint model: {summary['steps']} steps, final loss {summary['final_loss']:.3f}, {summary['seconds']:.0f} s")
    return out
