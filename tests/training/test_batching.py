"""Batch orders: `LengthGroupedBatches` covers each epoch exactly once, is seeded and resumable like
`CyclingBatches`, shards across processes the same way, and pads less than random batches."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl.training.batching import (
    CyclingBatches,
    LengthGroupedBatches,
    TaskDataSource,
    make_task_batches,
)


def _source(num_examples=1000, seed=0, task="vqa"):
    """Examples with 10-100 regions (uniform, as the adaptive release's range) and 3-14 words; a batch is the
    array of its example indices."""
    rng = np.random.default_rng(seed)
    sizes = np.stack([rng.integers(10, 101, num_examples), rng.integers(3, 15, num_examples)], axis=1)
    return TaskDataSource(task, num_examples, collate=lambda indices: {"indices": indices.copy()}, sizes=sizes)


def _epoch(batches):
    return [batches.indices(b) for b in range(batches.batches_per_epoch)]


def _padded_slots(source, batches):
    """Region slots of padded batches (B x most regions in the batch) over one epoch, and the real regions."""
    slots = real = 0
    for indices in _epoch(batches):
        regions = source.sizes[indices, 0]
        slots += len(indices) * int(regions.max())
        real += int(regions.sum())
    return slots, real


@pytest.mark.parametrize("num_examples", [1000, 1013])
def test_every_example_once_per_epoch(num_examples):
    source = _source(num_examples)
    batches = LengthGroupedBatches(source, 16, seed=3)
    assert batches.batches_per_epoch == num_examples // 16
    for epoch in range(2):
        seen = np.concatenate([batches.indices(epoch * batches.batches_per_epoch + b) for b in range(62)])
        assert len(seen) == len(np.unique(seen)) == 62 * 16  # none twice
        if num_examples % 16 == 0:
            assert sorted(seen.tolist()) == list(range(num_examples))  # all of them
    # The dropped tail is random, not the largest examples: both epochs drop different ones.
    first = set(np.concatenate(_epoch(batches)).tolist())
    second = {int(i) for b in range(62) for i in batches.indices(62 + b)}
    if num_examples % 16:
        assert first != second


def test_same_seed_same_order_and_other_seed_another():
    source = _source()
    a = np.stack(_epoch(LengthGroupedBatches(source, 16, seed=5)))
    b = np.stack(_epoch(LengthGroupedBatches(source, 16, seed=5)))
    c = np.stack(_epoch(LengthGroupedBatches(source, 16, seed=6)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # Epochs differ, and the first batches are not the largest (the batches are shuffled after sorting).
    batches = LengthGroupedBatches(source, 16, seed=5)
    assert not np.array_equal(batches.indices(0), batches.indices(batches.batches_per_epoch))
    maxima = [source.sizes[i, 0].max() for i in _epoch(batches)]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_batches_hold_similar_sizes_sorted_by_regions_then_words():
    source = _source()
    batches = LengthGroupedBatches(source, 20, seed=0, megabatch_batches=50)  # one megabatch per epoch
    for indices in _epoch(batches):
        keys = [tuple(k) for k in source.sizes[indices].tolist()]
        assert keys == sorted(keys) or keys == sorted(keys, reverse=True)


def test_resume_mid_epoch_gives_the_same_remaining_batches():
    source = _source()
    straight = LengthGroupedBatches(source, 16, seed=1)
    expected = [next(straight)["indices"] for _ in range(100)]  # crosses an epoch boundary (62 per epoch)
    first = LengthGroupedBatches(source, 16, seed=1)
    for _ in range(37):
        next(first)
    state = first.state_dict()
    resumed = LengthGroupedBatches(source, 16, seed=1)
    resumed.load_state_dict(state)
    assert resumed.position == 37
    rest = [next(resumed)["indices"] for _ in range(63)]
    assert all(np.array_equal(x, y) for x, y in zip(expected[37:], rest))


def test_processes_split_each_grouped_batch():
    source = _source()
    whole = LengthGroupedBatches(source, 16, seed=2)
    shards = [LengthGroupedBatches(source, 16, seed=2, rank=r, world_size=2) for r in range(2)]
    for number in (0, 5, 70):
        parts = np.concatenate([s.indices(number) for s in shards])
        assert sorted(parts.tolist()) == sorted(whole.indices(number).tolist())


def test_grouping_pads_less_than_random_batches():
    source = _source(2048)  # 64 whole batches: both orders use every example
    grouped_slots, real = _padded_slots(source, LengthGroupedBatches(source, 32, seed=0))
    random_slots, real_random = _padded_slots(source, CyclingBatches(source, 32, seed=0))
    assert real == real_random == int(source.sizes[:, 0].sum())
    # Random batches of 32 from 10-100 pad almost every image to ~98 regions; grouped ones to their neighbours.
    assert random_slots / real > 1.7
    assert grouped_slots / real < 1.1
    assert grouped_slots < 0.65 * random_slots


def test_make_task_batches_and_refusals():
    source = _source(100)
    assert type(make_task_batches(source, 10, 0)) is CyclingBatches
    assert type(make_task_batches(source, 10, 0, group_by_length=True)) is LengthGroupedBatches
    with pytest.raises(ValueError, match="needs the examples' sizes"):
        LengthGroupedBatches(TaskDataSource("vqa", 100, collate=lambda i: {}), 10, 0)
    with pytest.raises(ValueError, match=r"expected \(100, 2\)"):
        LengthGroupedBatches(TaskDataSource("vqa", 100, collate=lambda i: {}, sizes=np.zeros((99, 2))), 10, 0)
    with pytest.raises(ValueError, match="megabatch_batches"):
        LengthGroupedBatches(source, 10, 0, megabatch_batches=0)


def test_batch_reads_any_position_without_moving_it():
    source = _source(200)
    batches = CyclingBatches(source, 10, seed=4)
    assert np.array_equal(batches.batch(7)["indices"], batches.indices(7)) and batches.position == 0
    for _ in range(7):
        next(batches)
    assert np.array_equal(next(batches)["indices"], batches.indices(7)) and batches.position == 8


def test_batch_with_workers_restarts_for_a_batch_out_of_order():
    source = _source(200)
    batches = CyclingBatches(source, 10, seed=4, num_workers=1)
    for number in (5, 6, 2, 3):
        assert np.array_equal(np.asarray(batches.batch(number)["indices"]), batches.indices(number))
    assert batches.position == 0
