"""Scripted experts: they succeed, their stage annotations are ordered and honest, failures fail."""

from __future__ import annotations

import numpy as np
import pytest

from headway.sim.env import make_env
from headway.sim.expert import FAILURES, Behaviour, sample_behaviour
from headway.sim.rollout import annotate, run_episode
from headway.sim.task import task_names

TASKS = ("lift", "stack", "pick_place_can", "door")
EXPERT_SEEDS = (0, 1, 2)


def test_all_four_tasks_are_registered():
    assert set(TASKS) <= set(task_names())


@pytest.fixture(scope="module", params=TASKS)
def physics_env(request):
    env = make_env(request.param, views=())  # no cameras: physics only, fast
    yield env
    env.close()


def assert_contiguous(subtasks, stage_names):
    assert [s.name for s in subtasks] == list(stage_names[: len(subtasks)]), "stages out of order"
    assert subtasks[0].start == 0
    for before, after in zip(subtasks, subtasks[1:]):
        assert before.start <= before.end < after.start, "stages overlap or run backwards"
        assert after.start == before.end + 1, "a gap between stages"


def test_expert_succeeds_with_every_stage_annotated_in_order(physics_env):
    for seed in EXPERT_SEEDS:
        episode = run_episode(physics_env, Behaviour(), seed)
        assert episode.success, f"{physics_env.task.name} expert failed on seed {seed}"
        assert len(episode.subtasks) == len(physics_env.task.stages)
        assert_contiguous(episode.subtasks, physics_env.task.stages)
        assert episode.subtasks[-1].end == episode.success_frame
        assert episode.next_success[-1]
        # the oracle reaches the end of the task exactly when the annotation does
        assert episode.oracle_stage[-1] == len(physics_env.task.stages) - 1 and episode.oracle_tau[-1] == 1.0
        assert episode.scene_stage[-1] == episode.oracle_stage[-1] and episode.scene_tau[-1] == 1.0
        assert np.all(episode.scene_stage <= episode.oracle_stage), "the scene never runs ahead of what was achieved"


@pytest.mark.parametrize("failure", FAILURES)
def test_every_failure_mode_really_fails(physics_env, failure):
    task = physics_env.task
    behaviour = sample_behaviour("fail", task, np.random.default_rng(11), failure)
    episode = run_episode(physics_env, behaviour, seed=11)
    assert not episode.success, f"{task.name}/{failure} succeeded"
    assert episode.length == physics_env.horizon, "a failure runs until the time limit"
    assert len(episode.subtasks) < len(task.stages), "a failure must not be annotated as complete"
    assert episode.subtasks, "every failure still reaches the object first, so no episode is left unannotated"
    assert_contiguous(episode.subtasks, task.stages)
    assert episode.quality < 1.0
    if failure == "drop" and task.name != "door":
        # the object lies where it fell and the gripper went on without it: the scene is back at the start,
        # while the annotations keep the grasp that was achieved
        assert episode.scene_stage[-1] == 0 < len(episode.subtasks)


def test_quality_orders_failures_below_successes(physics_env):
    good = run_episode(physics_env, Behaviour(), seed=4)
    bad = run_episode(physics_env, sample_behaviour("fail", physics_env.task, np.random.default_rng(4), "stall"), 4)
    assert good.quality > 1.0 > bad.quality


def test_annotation_stops_at_the_first_stage_not_achieved():
    stages = ("reach", "grasp", "lift")
    expert_stage = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    full = annotate(stages, expert_stage, [True, True, None], success_frame=7)
    assert [(s.name, s.start, s.end) for s in full] == [("reach", 0, 2), ("grasp", 3, 4), ("lift", 5, 7)]
    missed_grasp = annotate(stages, expert_stage, [True, False, None], success_frame=None)
    assert [(s.name, s.start, s.end) for s in missed_grasp] == [("reach", 0, 2)]
    never_lifted = annotate(stages, expert_stage, [True, True, None], success_frame=None)
    assert [s.name for s in never_lifted] == ["reach", "grasp"]
