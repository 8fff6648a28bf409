import pytest

from hierarchical_vl.training.schedule import TaskSwitchingSchedule, TaskTiming, step_decay_learning_rate


def _algorithm_1(iterations: dict[str, int], cycle: int) -> list[str]:
    """Algorithm 1 written out by hand: S = ([1] * C a_1 + ... + [M'] * C a_M') * floor(#iter / C)."""
    total = sum(iterations.values())
    num_cycle = total // cycle
    one_cycle = []
    for task, iters in iterations.items():
        one_cycle += [task] * round(cycle * iters / total)
    return one_cycle * num_cycle


def _timings(iterations, steps=None, batch=8):
    steps = steps or {task: 100 for task in iterations}
    return [TaskTiming(task, iters, steps[task], batch) for task, iters in iterations.items()]


@pytest.mark.parametrize(
    "iterations, cycle",
    [
        ({"vqa": 600, "retrieval": 300, "grounding": 100}, 10),
        ({"vqa": 500, "grounding": 500}, 100),
        ({"retrieval": 1200}, 100),
        ({"grounding": 250, "retrieval": 750}, 40),
    ],
)
def test_sequence_matches_algorithm_1(iterations, cycle):
    schedule = TaskSwitchingSchedule(_timings(iterations), cycle)
    assert schedule.sequence() == _algorithm_1(iterations, cycle)
    assert list(schedule) == _algorithm_1(iterations, cycle)
    assert schedule.finished


def test_worked_example():
    schedule = TaskSwitchingSchedule(_timings({"vqa": 600, "retrieval": 300, "grounding": 100}), cycle_length=10)
    assert schedule.alphas == {"vqa": 0.6, "retrieval": 0.3, "grounding": 0.1}
    assert schedule.num_cycles == 100 and len(schedule) == 1000
    assert schedule.sequence()[:12] == ["vqa"] * 6 + ["retrieval"] * 3 + ["grounding"] + ["vqa"] * 2


def test_learning_rate_step_is_sum_of_task_steps_and_halves():
    schedule = TaskSwitchingSchedule(
        _timings({"vqa": 600, "grounding": 400}, steps={"vqa": 300, "grounding": 200}),
        cycle_length=10,
        base_lr=1e-3,
    )
    assert schedule.lr_step == 500
    assert schedule.learning_rate(0) == 1e-3 and schedule.learning_rate(499) == 1e-3
    assert schedule.learning_rate(500) == 5e-4 and schedule.learning_rate(999) == 5e-4
    assert step_decay_learning_rate(1000, 1e-3, 500) == 2.5e-4


def test_position_is_saved_and_restored():
    make = lambda: TaskSwitchingSchedule(_timings({"vqa": 60, "retrieval": 40}), cycle_length=10)  # noqa: E731
    full = make().sequence()
    schedule = make()
    first = [next(schedule) for _ in range(23)]
    state = schedule.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert first + list(resumed) == full
    assert resumed.learning_rate() == schedule.learning_rate(100)


def test_state_of_another_schedule_is_refused():
    state = TaskSwitchingSchedule(_timings({"vqa": 60, "retrieval": 40}), 10).state_dict()
    with pytest.raises(ValueError, match="does not match"):
        TaskSwitchingSchedule(_timings({"vqa": 60, "retrieval": 40}), 20).load_state_dict(state)


@pytest.mark.parametrize(
    "timings, cycle, message",
    [
        ([], 10, "at least one task"),
        (_timings({"vqa": 10}), 20, "exceeds"),
        (_timings({"vqa": 10}), 0, "cycle_length"),
    ],
)
def test_invalid_schedules(timings, cycle, message):
    with pytest.raises(ValueError, match=message):
        TaskSwitchingSchedule(timings, cycle)


def test_invalid_timing():
    with pytest.raises(ValueError, match="iterations"):
        TaskTiming("vqa", 0, 10, 8)
