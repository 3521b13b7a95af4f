"""Control-loop timing of the rollout controller with the reward model in the loop, at 20 Hz and 50 Hz.

Two arms, the same controller loop (`RolloutController.run_episode`: read arm and cameras ->
streaming reward model on both views -> policy -> safety layer -> record the frame -> rate loop):

- `prerendered`: a fake arm serving frames rendered once by the simulator (two 84x84 views), so the
  figures are headway's own overhead (reward model, safety layer, recording, pacing);
- `sim`: `SimArm` (lift, two 84x84 views) with the scripted expert, where each step also steps
  MuJoCo and renders both cameras.

Without --model an untrained reward model of the default size is built from its config (timing
does not depend on the weights), so the bench runs on a fresh machine.

    uv run python bench/control_loop.py [--model CKPT] [--seconds 15] [--rates 20,50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from headway.hardware.cameras import StaticCamera
from headway.hardware.controller import RolloutConfig, RolloutController
from headway.hardware.protocols import ArmContext, ArmObservation
from headway.hardware.safety import SafetyConfig
from headway.policy.scripted import ScriptedPolicy
from headway.hardware.sim_arm import SimArm, sim_limits

VIEWS = ("agentview", "robot0_eye_in_hand")
INSTRUCTION = "pick up the red cube and lift it"


def default_model(path: str | None):
    from headway.reward.loading import load_reward_model
    from headway.reward.stage_model import StageModelConfig, StageRewardNet
    from headway.reward.stage_reward import StageRewardModel

    if path:
        return load_reward_model(path, device="cpu"), path
    torch.manual_seed(0)
    config = StageModelConfig(views=VIEWS, stage_names=("reach the cube", "grasp the cube", "lift the cube"), stage_proportions=(0.56, 0.18, 0.26))
    return StageRewardModel(StageRewardNet(config), device="cpu"), "untrained default-size StageRewardModel"


class PrerenderedArm(ArmContext):
    """The simulated Panda's interface serving a bank of pre-rendered frames: no physics, no rendering."""

    name, is_simulated, control_period = "prerendered", False, None

    def __init__(self, bank: list[dict]) -> None:
        self.bank = bank
        self.cameras = {v: StaticCamera(v) for v in VIEWS}
        self.limits = sim_limits()
        self.t = 0
        self.is_connected = False
        self.state = bank[0]["state"].copy()

    views = property(lambda self: VIEWS)
    observation_features = property(lambda self: {"state": (9,), **{f"images.{v}": (84, 84, 3) for v in VIEWS}})
    action_features = property(lambda self: {"action": (7,)})

    def connect(self) -> None:
        self.is_connected = True
        for camera in self.cameras.values():
            camera.connect()
        self._put()

    def disconnect(self) -> None:
        self.is_connected = False

    def reset_episode(self, seed=None) -> None:
        self.t = 0
        self._put()

    def _put(self) -> None:
        obs = self.bank[self.t % len(self.bank)]
        self.state = obs["state"]
        for view, camera in self.cameras.items():
            camera.put(obs["images"][view])

    def read_state(self) -> np.ndarray:
        return self.state.copy()

    def get_observation(self) -> ArmObservation:
        for camera in self.cameras.values():  # a live stream: the newest frame is current
            camera.touch()
        frames = {v: c.read() for v, c in self.cameras.items()}
        return ArmObservation(self.state.copy(), time.monotonic(), frames)

    def send_action(self, action):
        self.t += 1
        self._put()
        return np.asarray(action, dtype=np.float32)


class ReplayPolicy:
    """Replays the expert's actions recorded with the frame bank (cheap, like a small BC network's output)."""

    task, views, state_dim, action_dim = "lift", (), 9, 7

    def __init__(self, actions: list[np.ndarray]) -> None:
        self.actions, self.t = actions, 0

    def reset(self) -> None:
        self.t = 0

    def act(self, observation) -> np.ndarray:
        self.t += 1
        return self.actions[(self.t - 1) % len(self.actions)]

    def save(self, path) -> None: ...


def render_bank(steps: int = 60) -> tuple[list[dict], list[np.ndarray]]:
    policy = ScriptedPolicy("lift")
    arm = SimArm("lift", views=VIEWS, image_size=84)
    bank, actions = [], []
    with arm:
        policy.reset()
        for _ in range(steps):
            obs = arm.get_observation()
            bank.append({"state": obs.state, "images": {v: f.image.copy() for v, f in obs.frames.items()}})
            action = np.clip(policy.act(obs.policy_observation()), -0.95, 0.95)
            actions.append(action.astype(np.float32))
            arm.send_action(action)
    return bank, actions


def measure(arm, policy, model, fps: float, seconds: float, record: Path) -> dict:
    config = RolloutConfig(
        robot="sim:lift", record=record, episodes=1, fps=fps, max_seconds=seconds, stall_seconds=1e6,
        success_threshold=0.999999, success_steps=10**6, reset="auto", video=False, progress=False,
        safety=SafetyConfig(watchdog_timeout=None),
    )
    controller = RolloutController(arm, policy, model, config, INSTRUCTION)
    if not arm.is_simulated:  # run on wall time: the limit in steps follows the rate
        controller.max_steps = int(round(seconds * fps))
    with controller.safety:
        controller._first_index = 0
        episode, error = controller.run_episode(0, 0)
    if error is not None:
        raise error
    stats = controller.loop_stats[-1]
    return {**stats.as_dict(), "frames": episode.length, "interventions": dict(controller.safety.counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="reward checkpoint (default: untrained default-size model)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measured run")
    parser.add_argument("--rates", default="20,50")
    parser.add_argument("--arms", default="prerendered,sim")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    model, model_name = default_model(args.model)
    print(f"reward model: {model_name} ({model.image_size} px, views {', '.join(model.views)}); "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    results = []
    scratch = Path("/tmp") / f"headway_control_loop_{os.getpid()}"
    arms = args.arms.split(",")
    bank, actions = render_bank() if "prerendered" in arms else (None, None)
    for arm_name in arms:
        for fps in rates:
            if arm_name == "prerendered":
                arm, policy = PrerenderedArm(bank), ReplayPolicy(actions)
            else:
                arm, policy = SimArm("lift", views=VIEWS, image_size=84), ScriptedPolicy("lift")
            row = measure(arm, policy, model, fps, args.seconds, scratch / f"{arm_name}_{fps:g}")
            row.update(arm=arm_name, load_average=os.getloadavg()[0])
            results.append(row)
            print(
                f"{arm_name:>11} @ {fps:>4g} Hz: period mean {row['mean_period_ms']:6.1f} ms, p99 {row['p99_period_ms']:6.1f} ms, "
                f"max {row['max_period_ms']:6.1f} ms, work mean {row['mean_work_ms']:5.1f} ms (p99 {row['p99_work_ms']:5.1f}), "
                f"overruns {row['overruns']}/{row['ticks']} ({100 * row['overrun_rate']:.1f}%)",
                flush=True,
            )
    print("\n| arm | rate | ticks | mean period | p99 period | mean work | p99 work | overruns |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['arm']} | {r['fps']:g} Hz | {r['ticks']} | {r['mean_period_ms']:.1f} ms | {r['p99_period_ms']:.1f} ms | "
            f"{r['mean_work_ms']:.1f} ms | {r['p99_work_ms']:.1f} ms | {100 * r['overrun_rate']:.1f}% |"
        )
    if args.json:
        args.json.write_text(json.dumps({"model": model_name, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
