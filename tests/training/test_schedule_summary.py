"""Honest schedules: the summary logged before training gives the updates each task gets, which are the updates run;
iterations that whole cycles leave over are reported, or run as a last partial cycle with ``partial_cycle``."""

import logging
import re
from collections import Counter

import pytest

from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.run import train_from_arguments
from hierarchical_vl.training.schedule import TaskSwitchingSchedule, TaskTiming
from hierarchical_vl.training.trainer import TrainerCallback

from .conftest import write_config


class _CountTasks(TrainerCallback):
    def __init__(self):
        self.counts = {}

    def on_update_end(self, trainer, state):
        self.counts.setdefault(state.stage, Counter())[state.task] += 1


def _timings(*iterations):
    return [TaskTiming(task, count, 50, 4) for task, count in zip(("grounding", "retrieval", "vqa"), iterations)]


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize(("iterations", "cycle"), [((100, 200), 40), ((100, 100, 100), 40), ((7, 5), 5), ((30,), 7)])
def test_summary_counts_are_the_sequence(iterations, cycle, partial):
    schedule = TaskSwitchingSchedule(_timings(*iterations), cycle, partial_cycle=partial)
    assert dict(Counter(schedule.sequence())) == {k: v for k, v in schedule.task_updates().items() if v}
    assert len(schedule.sequence()) == len(schedule) == sum(schedule.task_updates().values())
    assert [schedule.task_at(i) for i in range(len(schedule))] == schedule.sequence()
    whole = sum(schedule.updates_per_cycle.values()) * schedule.num_cycles
    assert schedule.sequence()[:whole] == TaskSwitchingSchedule(_timings(*iterations), cycle).sequence()[:whole]
    if partial:
        assert len(schedule) == max(sum(iterations), whole) and schedule.not_run <= 0
    else:
        assert schedule.not_run == sum(iterations) - whole


def test_worked_example_of_the_summary():
    schedule = TaskSwitchingSchedule(_timings(100, 200), 40)
    assert len(schedule) == 280 and schedule.not_run == 20
    assert schedule.summary("all") == (
        "all: 280 updates of grounding+retrieval: grounding 91 (13/cycle), retrieval 189 (27/cycle)\n"
        "  cycle 40 (C) -> 40 updates x 7 cycles\n"
        "  learning rate 0.001, x0.5 every 100 updates (at update 100, 200)"
    )
    partial = TaskSwitchingSchedule(_timings(100, 200), 40, partial_cycle=True)
    assert len(partial) == 300 and partial.not_run == 0
    assert partial.partial_updates == {"grounding": 7, "retrieval": 13}  # 20 x 1/3 and 20 x 2/3, largest remainder
    assert partial.sequence()[280:] == ["grounding"] * 7 + ["retrieval"] * 13
    assert "+ a partial cycle of 20" in partial.summary()
    assert partial.learning_rate(299) == 0.001 * 0.5**2


def test_default_schedule_and_its_saved_state_are_unchanged():
    schedule = TaskSwitchingSchedule(_timings(8, 12), 5)
    assert (
        schedule.sequence()
        == ["grounding"] * 2
        + ["retrieval"] * 3
        + ["grounding"] * 2
        + ["retrieval"] * 3
        + ["grounding"] * 2
        + ["retrieval"] * 3
        + ["grounding"] * 2
        + ["retrieval"] * 3
    )
    assert schedule.state_dict() == {
        "position": 0,
        "sequence_length": 20,
        "cycle": ["grounding"] * 2 + ["retrieval"] * 3,
        "lr_step": 100,
    }


def _summaries(messages):
    """Stage name -> {task: updates} from the logged summaries."""
    found = {}
    for message in messages:
        match = re.match(r"(\S+): \d+ updates of \S+: (.*)", message.splitlines()[0])
        if match:
            found[match.group(1)] = {task: int(n) for task, n in re.findall(r"(\w+) (\d+) \(", match.group(2))}
    return found


@pytest.mark.parametrize("partial", [False, True])
def test_summary_matches_the_updates_run(tiny_corpus, tmp_path, caplog, partial):
    stages = [
        {"name": "grounding", "tasks": ["grounding"], "cycle_length": 3, "partial_cycle": partial},
        {"name": "all", "tasks": ["grounding", "vqa"], "cycle_length": 5, "evaluate": [], "partial_cycle": partial},
    ]
    tasks = {
        "grounding": {"iterations": 7, "lr_step": 4, "batch_size": 4},
        "vqa": {"iterations": 9, "lr_step": 6, "batch_size": 4},
    }
    config = write_config(tmp_path / "c.yaml", tiny_corpus, tmp_path / "out", curriculum=stages, tasks=tasks)
    counter = _CountTasks()
    with caplog.at_level(logging.INFO, logger="hierarchical_vl"):
        result = train_from_arguments(load_training_arguments(config), evaluate=False, callbacks=[counter])
    messages = [record.getMessage() for record in caplog.records]
    ran = {stage: dict(counts) for stage, counts in counter.counts.items()}
    assert _summaries(messages) == ran
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    if partial:
        assert ran == {"grounding": {"grounding": 7}, "all": {"grounding": 6, "vqa": 10}}  # the 1 left: vqa's share
        assert result.updates == 7 + 16 and not any("not run" in m for m in warnings)
    else:
        assert ran == {"grounding": {"grounding": 6}, "all": {"grounding": 6, "vqa": 9}}
        assert result.updates == 6 + 15
        assert (
            "grounding: 7 iterations with cycle 3: 6 updates run, 1 not run; set curriculum.0.partial_cycle=true"
            in (" ".join(warnings))
        )
        assert any(
            "all: 16 iterations with cycle 5: 15 updates run, 1 not run; set curriculum.1.partial_cycle" in m
            for m in warnings
        )
