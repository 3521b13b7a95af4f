"""Data and models the bench scripts make for themselves when none are given, kept for reruns."""

from __future__ import annotations

from pathlib import Path


def simulated_dataset(out: Path, progress: bool = True, **settings) -> Path:
    """A dataset collected by `headway sim collect` with `settings` (CollectConfig fields), made once."""
    import json

    from headway.datasets.collect import CollectConfig, collect
    from headway.run_dir import differences, with_defaults

    if (out / "meta" / "info.json").exists():  # made before: kept only if collected with these settings (wherever it lives)
        card = out / "meta" / "headway.json"
        def normal(identity: dict) -> dict:  # as stored in JSON, without the path
            return {k: v for k, v in json.loads(json.dumps(identity)).items() if k != "out"}

        recorded = with_defaults(normal(CollectConfig().identity()), json.loads(card.read_text()).get("collect", {}) if card.exists() else {})
        problems = differences(normal(CollectConfig(out=out, **settings).identity()), normal(recorded))
        if problems:
            raise SystemExit(f"{out} was collected with other settings ({'; '.join(problems)}); pass another work folder or remove it")
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
