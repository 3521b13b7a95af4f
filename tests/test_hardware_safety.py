"""Safety layer, fixed-rate loop and cameras: properties over any action sequence, watchdog, emergency stops, stale/dead cameras."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hardware_fakes import FakeArm

from headway.errors import HeadwayError
from headway.hardware.cameras import StaticCamera, ThreadedCamera
from headway.hardware.protocols import DELTA, ArmContext, ArmObservation, CameraError
from headway.hardware.rate import RateLoop
from headway.hardware.safety import REASONS, SafetyConfig, SafetyLayer, stop_on_signals
from headway.hardware.sim_arm import POSITION_GAIN, WORKSPACE_HIGH, WORKSPACE_LOW, sim_limits

EPS = 1e-6
FLOATS = st.one_of(
    st.floats(-3.0, 3.0),
    st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0]),
)
ACTIONS = st.one_of(
    st.lists(FLOATS, min_size=4, max_size=4),  # right shape, maybe non-finite or huge
    st.lists(FLOATS, min_size=0, max_size=7).filter(lambda a: len(a) != 4),  # wrong length
    st.just([[0.1, 0.2], [0.3, 0.4]]),  # wrong rank
    st.just("not an action"),
    st.just(None),
)
CONFIG = SafetyConfig(margin=0.05, watchdog_timeout=None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTIONS, min_size=1, max_size=25))
def test_no_command_ever_exceeds_limits_step_velocity_or_margins(actions):
    arm = FakeArm()
    arm.connect()
    safety = SafetyLayer(arm, CONFIG)
    limits = arm.limits
    span = limits.high - limits.low
    inner_low, inner_high = limits.low + CONFIG.margin * span, limits.high - CONFIG.margin * span
    dt = 0.05
    previous = None
    for action in actions:
        safety.get_observation()
        sent = safety.send_action(action)
        command, measured = arm.received[-1]
        np.testing.assert_array_equal(command.astype(np.float32), sent)  # what we return is what was sent
        assert command.shape == (4,) and np.all(np.isfinite(command))
        assert np.all(command >= limits.low - EPS) and np.all(command <= limits.high + EPS)
        joints = slice(0, 3)
        assert np.all(np.abs(command[joints] - measured[joints]) <= limits.max_step[joints] + EPS)
        if previous is not None:
            assert np.all(np.abs(command[joints] - previous[joints]) <= limits.max_velocity[joints] * dt + EPS)
        # the margin holds unless the arm is already outside it by more than a step
        assert np.all(command[joints] >= inner_low[joints] - EPS) and np.all(command[joints] <= inner_high[joints] + EPS)
        valid = isinstance(action, list) and len(action) == 4 and all(isinstance(a, float) for a in action)
        valid = valid and np.all(np.isfinite(action))
        if not valid:  # rejected: hold the measured joints, keep the gripper as it was
            np.testing.assert_allclose(command[joints], measured[joints], atol=EPS)
        previous = command


class FakeCartesianArm(ArmContext):
    """The simulated Panda's limits (position deltas inside a workspace box) over a point that integrates commands."""

    name, is_simulated, views = "cartesian", True, ()
    control_period = 0.05
    observation_features = {"state": (9,)}
    action_features = {"action": (7,)}

    def __init__(self) -> None:
        self.limits = sim_limits()
        self.state = np.zeros(9)
        self.state[:3] = [0.0, 0.0, 0.78]  # near the bottom of the workspace
        self.received = []
        self.is_connected = True

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def reset_episode(self, seed=None) -> None: ...

    def get_observation(self) -> ArmObservation:
        return ArmObservation(self.state.astype(np.float32), 0.0, {})

    def send_action(self, action):
        action = np.asarray(action, dtype=np.float64)
        self.received.append((action.copy(), self.state.copy()))
        self.state[:3] += POSITION_GAIN * action[:3]
        return action.astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(-50, 50), st.sampled_from([np.nan, np.inf])), min_size=7, max_size=7), min_size=1, max_size=40))
def test_cartesian_targets_stay_inside_the_workspace(actions):
    arm = FakeCartesianArm()
    config = SafetyConfig(margin=0.02, watchdog_timeout=None)
    safety = SafetyLayer(arm, config)
    span = WORKSPACE_HIGH - WORKSPACE_LOW
    box_low, box_high = WORKSPACE_LOW + config.margin * span, WORKSPACE_HIGH - config.margin * span
    for action in actions:
        safety.get_observation()
        safety.send_action(action)
        command, measured = arm.received[-1]
        assert np.all(np.abs(command) <= 1 + EPS)
        target = measured[:3] + POSITION_GAIN * command[:3]
        inside = np.all(measured[:3] >= box_low - EPS) & np.all(measured[:3] <= box_high + EPS)
        if inside:
            assert np.all(target >= box_low - EPS) and np.all(target <= box_high + EPS)
        else:  # started below the margin: never moves further out, moves back in by at most a step
            low_side = measured[:3] < box_low
            assert np.all(target[low_side] >= measured[:3][low_side] - EPS)
        assert np.all(np.abs(POSITION_GAIN * command[:3]) <= arm.limits.max_step[:3] + EPS)
    assert arm.limits.kind[0] == DELTA


def test_every_intervention_is_counted_with_its_reason():
    arm = FakeArm()
    arm.connect()
    safety = SafetyLayer(arm, SafetyConfig(watchdog_timeout=None))
    safety.get_observation()
    safety.send_action([np.nan, 0, 0, 0])
    safety.send_action([0.0, 0.0])
    safety.send_action([5.0, 0.0, 0.0, 0.0])  # beyond the joint limit and the per-step change
    assert safety.counts["non_finite"] == 1 and safety.counts["shape"] == 1
    assert safety.counts["limits"] == 1 and safety.counts["step"] == 1
    assert safety.counts["velocity"] == 1 and safety.counts["joint_limits"] == 1  # 5.0 breaks every bound at once
    count, mask = safety.take_step_interventions()
    assert count == 6 and mask & REASONS["non_finite"] and mask & REASONS["step"]
    assert safety.take_step_interventions() == (0, 0)
    assert [row.reason for row in safety.log][:2] == ["non_finite", "shape"] and "j0" in safety.log[-1].detail


def test_watchdog_holds_when_commands_stop():
    arm = FakeArm()
    safety = SafetyLayer(arm, SafetyConfig(watchdog_timeout=0.1, watchdog_grace=0.0))
    with safety:
        safety.get_observation()
        safety.arm_watchdog()
        safety.send_action([0.05, 0.0, 0.0, 1.0])
        sent_before = len(arm.received)
        time.sleep(0.5)  # the policy stalls
        assert safety.watchdog_tripped and safety.counts["watchdog"] == 1  # once per stall
        assert len(arm.received) == sent_before + 1
        hold, measured = arm.received[-1]
        np.testing.assert_allclose(hold[:3], measured[:3])  # held where it was
        assert hold[3] == 1.0  # the gripper keeps its last command
        safety.send_action([0.05, 0.0, 0.0, 1.0])  # a valid command re-arms it
        time.sleep(0.35)
        assert safety.counts["watchdog"] == 2
    assert arm.disconnects == 1


def test_emergency_stop_from_code_replaces_every_later_command_by_a_hold():
    arm = FakeArm()
    with SafetyLayer(arm, SafetyConfig(watchdog_timeout=None)) as safety:
        safety.get_observation()
        safety.send_action([0.1, 0.0, 0.0, 1.0])
        safety.emergency_stop("test button")
        assert safety.stopped == "test button" and safety.counts["estop"] == 1
        safety.get_observation()
        sent = safety.send_action([0.1, 0.1, 0.0, 1.0])
        np.testing.assert_allclose(sent[:3], arm.received[-1][1][:3], atol=1e-6)


def test_a_signal_ends_in_the_safe_state():
    arm = FakeArm()
    handler_before = signal.getsignal(signal.SIGINT)  # the default, or ignored under nohup
    with SafetyLayer(arm, SafetyConfig(watchdog_timeout=1.0)) as safety, stop_on_signals(safety):
        safety.get_observation()
        safety.send_action([0.1, 0.0, 0.0, 1.0])
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 2.0
        while not safety.stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        assert safety.stopped == "signal SIGINT"  # held by the watchdog thread, not in the handler
        np.testing.assert_allclose(arm.received[-1][0][:3], arm.received[-1][1][:3], atol=1e-6)
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_bad_safety_settings_are_refused():
    with pytest.raises(HeadwayError, match="margin"):
        SafetyConfig(margin=0.7)
    with pytest.raises(HeadwayError, match="watchdog"):
        SafetyConfig(watchdog_timeout=0)


def test_rate_loop_paces_and_counts_overruns():
    loop = RateLoop(100.0)
    loop.start()
    for i in range(20):
        if i == 10:
            time.sleep(0.03)  # one slow step
        loop.wait()
    stats = loop.stats()
    assert stats.ticks == 20 and stats.overruns >= 1
    assert 0.009 < np.median(loop.periods) < 0.02
    assert stats.max_period >= 0.03 and stats.p99_period >= np.median(loop.periods)
    with pytest.raises(HeadwayError):
        RateLoop(0)


def test_threaded_camera_gives_the_newest_frame_and_detects_stale_and_dead_devices():
    produced = []

    def grab():
        time.sleep(0.01)
        produced.append(1)
        return np.full((8, 8, 3), len(produced) % 255, np.uint8)

    camera = ThreadedCamera("front", grab, max_age=0.1)
    with camera:
        first = camera.read()
        time.sleep(0.05)
        second = camera.read()
        assert second.index > first.index and second.timestamp > first.timestamp
    grabs = []

    def hanging():  # one frame, then the device hangs
        grabs.append(1)
        if len(grabs) > 1:
            time.sleep(0.5)
        return np.zeros((8, 8, 3), np.uint8)

    with ThreadedCamera("hung", hanging, max_age=0.1) as hung:
        hung.read()
        time.sleep(0.2)
        with pytest.raises(CameraError, match="stale"):
            hung.read()

    calls = []

    def dying():
        calls.append(1)
        if len(calls) > 3:
            raise OSError("device unplugged")
        return np.zeros((8, 8, 3), np.uint8)

    dead = ThreadedCamera("dying", dying, max_age=1.0)
    with dead:
        time.sleep(0.1)
        with pytest.raises(CameraError, match="dead.*unplugged"):
            dead.read()
    with pytest.raises(CameraError, match="no frame"):
        ThreadedCamera("never", lambda: time.sleep(1.0), first_frame_timeout=0.1).connect()


def test_static_camera_faults():
    camera = StaticCamera("v", max_age=0.05)
    camera.connect()
    camera.put(np.zeros((4, 4, 3), np.uint8))
    assert camera.read().index == 1
    camera.hang()
    time.sleep(0.1)
    camera.put(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(CameraError, match="stale"):
        camera.read()
    camera.kill()
    with pytest.raises(CameraError, match="dead"):
        camera.read()


def test_keyboard_stops_an_episode_and_answers_the_reset_prompt():
    from headway.hardware.safety import KeyboardStop

    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stream, os.fdopen(write_end, "w") as keys:
        arm = FakeArm()
        with SafetyLayer(arm, SafetyConfig(watchdog_timeout=1.0)) as safety:
            keyboard = KeyboardStop(safety, stream=stream)
            keys.write("\n")
            keys.flush()
            assert keyboard.prompt("reset the scene") is True  # Enter between episodes: go on
            keyboard.in_episode = True
            keys.write("\n")
            keys.flush()
            deadline = time.monotonic() + 2.0
            while not safety.stopped and time.monotonic() < deadline:
                time.sleep(0.01)
            assert safety.stopped == "keyboard" and safety.counts["estop"] == 1
