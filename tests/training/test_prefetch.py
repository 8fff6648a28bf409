"""Prefetched batches, losses on the device, features on the device: the same batches and the same training run
as the synchronous loop, and exact resumption."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.batching import CyclingBatches, TaskDataSource
from hierarchical_vl.training.checkpointing import CheckpointManager
from hierarchical_vl.training.device_losses import DeviceLosses
from hierarchical_vl.training.prefetch import BatchPrefetcher, DeviceRegionFeatures
from hierarchical_vl.training.run import build_model, prepare_data, train_from_arguments
from hierarchical_vl.training.trainer import MultiTaskTrainer, TrainerCallback

from .conftest import write_config


def _counting_source(task, num_examples=50):
    calls = []

    def collate(indices):
        calls.append(indices.copy())
        return {"indices": torch.from_numpy(indices.copy()), "metadata": {"x": [1]}}

    return TaskDataSource(task, num_examples, collate), calls


def test_prefetched_batches_are_the_sequential_ones():
    sources = {task: _counting_source(task)[0] for task in ("a", "b")}
    plain = {task: CyclingBatches(source, 4, seed=1) for task, source in sources.items()}
    batches = {task: CyclingBatches(source, 4, seed=1) for task, source in sources.items()}
    order = ["a", "a", "b", "a", "b", "b", "b", "a"] * 3
    prefetcher = BatchPrefetcher(batches, "cpu", depth=2)
    prefetcher.start(iter(order))
    for task in order:
        batch = prefetcher.next(task)
        assert "metadata" not in batch
        assert torch.equal(batch["indices"], next(plain[task])["indices"])
        assert batches[task].position == plain[task].position  # positions count the batches handed out
    prefetcher.close()


def test_a_batch_off_the_announced_sequence_is_still_right():
    source, calls = _counting_source("a")
    other, _ = _counting_source("b")
    batches = {"a": CyclingBatches(source, 4, seed=0), "b": CyclingBatches(other, 4, seed=0)}
    prefetcher = BatchPrefetcher(batches, "cpu", depth=1)
    prefetcher.start(["a", "a", "a"])
    assert torch.equal(prefetcher.next("a")["indices"], torch.from_numpy(batches["a"].indices(0)))
    assert torch.equal(prefetcher.next("b")["indices"], torch.from_numpy(batches["b"].indices(0)))  # unannounced
    assert torch.equal(prefetcher.next("a")["indices"], torch.from_numpy(batches["a"].indices(1)))
    assert torch.equal(prefetcher.next("a")["indices"], torch.from_numpy(batches["a"].indices(2)))
    assert batches["a"].position == 3 and batches["b"].position == 1
    prefetcher.close()


def test_a_prepared_but_unused_batch_is_not_counted():
    source, calls = _counting_source("a")
    prepared_ahead = threading.Event()
    collate = source.collate

    def signalling(indices):
        batch = collate(indices)
        if len(calls) == 3:
            prepared_ahead.set()
        return batch

    source.collate = signalling
    batches = {"a": CyclingBatches(source, 4, seed=0)}
    prefetcher = BatchPrefetcher(batches, "cpu", depth=3)
    prefetcher.start(["a"] * 10)
    prefetcher.next("a")
    assert prepared_ahead.wait(timeout=60)  # batches 1 and 2 prepared in the background, never handed out
    prefetcher.close()
    assert batches["a"].state_dict()["position"] == 1  # the state records the batch handed out
    resumed = {"a": CyclingBatches(source, 4, seed=0)}
    resumed["a"].load_state_dict(batches["a"].state_dict())
    again = BatchPrefetcher(resumed, "cpu", depth=0)
    assert torch.equal(again.next("a")["indices"], torch.from_numpy(batches["a"].indices(1)))


def test_errors_of_the_background_thread_reach_the_loop():
    def collate(indices):
        raise ValueError("bad record 7")

    batches = {"a": CyclingBatches(TaskDataSource("a", 20, collate), 4, seed=0)}
    prefetcher = BatchPrefetcher(batches, "cpu", depth=1)
    prefetcher.start(["a"] * 3)
    with pytest.raises(ValueError, match="bad record 7"):
        prefetcher.next("a")
    prefetcher.close()


def test_device_features_gather_the_store_rows(tiny_corpus):
    from hierarchical_vl.data import RegionFeatureStore, convert_region_features

    store_dir = tiny_corpus / "prefetch_test.store"
    if not store_dir.exists():
        convert_region_features(tiny_corpus / "features" / "region_features.tsv", store_dir, progress=False)
    store = RegionFeatureStore(store_dir)
    copy = DeviceRegionFeatures(store, "cpu")
    rows, _ = store.region_rows(np.array([3, 0, 5]), 12)  # (3, T)
    gathered = copy.gather(torch.from_numpy(rows))
    assert torch.equal(gathered, torch.from_numpy(store.read_rows(rows)))


def test_device_losses_match_python_floats_and_name_the_first_bad_loss():
    values = [0.71, 0.4, 0.2, float("nan"), 0.3, float("inf")]
    tracker = DeviceLosses()
    running = {}
    for update, value in enumerate(values[:3], start=1):
        loss = torch.tensor(value, dtype=torch.float32)
        tracker.add(update, "vqa", "all", loss)
        value = float(loss)
        running["vqa"] = value if "vqa" not in running else 0.9 * running["vqa"] + 0.1 * value
    tracker.check()
    assert tracker.running() == running  # exactly, not approximately
    for update, value in enumerate(values[3:], start=4):
        tracker.add(update, "grounding" if update == 4 else "vqa", "all", torch.tensor(value))
    with pytest.raises(FloatingPointError, match=r"the grounding loss became nan at update 4 \(all\)"):
        tracker.check()


def _run(tiny_corpus, directory, callbacks=(), data=None, **changes):
    directory.mkdir(parents=True, exist_ok=True)
    data = {"root": str(tiny_corpus), "min_answer_frequency": 0, "max_regions": 12, **(data or {})}
    config = write_config(directory / "config.yaml", tiny_corpus, directory / "out", data=data, **changes)
    args = load_training_arguments(config)
    prepared = prepare_data(args)
    if callbacks:
        trainer = MultiTaskTrainer(build_model(args, prepared), args, prepared.sources(), callbacks=callbacks)
        return trainer.train(), directory / "out"
    return train_from_arguments(args, prepared, evaluate=False), directory / "out"


def _same_weights(a, b):
    a, b = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert a.keys() == b.keys()
    return all(torch.equal(a[key], b[key]) for key in a)


class _Losses(TrainerCallback):
    def __init__(self):
        self.seen = []

    def on_update_end(self, trainer, state):
        self.seen.append((state.update, state.task, state.loss))


@pytest.fixture(scope="module")
def synchronous(tiny_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("synchronous")
    losses = _Losses()
    result, out = _run(tiny_corpus, directory, callbacks=[losses], prefetch_batches=0)
    return result, out, losses.seen


def test_prefetching_and_device_features_train_exactly_like_the_synchronous_loop(synchronous, tiny_corpus, tmp_path):
    sync_result, sync_out, sync_losses = synchronous
    losses = _Losses()
    ahead, ahead_out = _run(tiny_corpus, tmp_path / "ahead", callbacks=[losses], prefetch_batches=2)
    assert losses.seen == sync_losses  # every update's loss, bit for bit
    assert ahead.final_losses == sync_result.final_losses
    assert _same_weights(sync_out, ahead_out)
    on_device, device_out = _run(tiny_corpus, tmp_path / "device", data={"features_on_device": True})
    assert on_device.final_losses == sync_result.final_losses
    assert _same_weights(sync_out, device_out)


def test_grouped_batches_resume_exactly_with_prefetching_and_device_features(tiny_corpus, tmp_path):
    changes = {"data": {"group_by_length": True, "features_on_device": True}, "prefetch_batches": 2}
    whole, whole_out = _run(tiny_corpus, tmp_path / "whole", **changes)

    class _Killed(RuntimeError):
        pass

    class _Kill(TrainerCallback):
        def on_update_end(self, trainer, state):
            if state.update == 13:  # between the checkpoints at 10 and 15, with batches prepared ahead
                raise _Killed

    with pytest.raises(_Killed):
        _run(tiny_corpus, tmp_path / "killed", callbacks=[_Kill()], **changes)
    state = CheckpointManager.verify(CheckpointManager(tmp_path / "killed" / "out" / "checkpoints").checkpoints()[-1])
    assert state["updates"] == 10 and sum(data["position"] for data in state["data"].values()) == 10
    resumed, resumed_out = _run(tiny_corpus, tmp_path / "killed", **changes)
    assert resumed.final_losses.keys() == whole.final_losses.keys()
    assert _same_weights(whole_out, resumed_out)


def test_a_non_finite_loss_stops_training_before_the_next_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    original = MultiTaskTrainer._update

    def poisoned(self, task, learning_rate):
        loss = original(self, task, learning_rate)
        return loss * math.nan if self.state["updates"] == 2 else loss  # update 3

    monkeypatch.setattr(MultiTaskTrainer, "_update", poisoned)
    with pytest.raises(FloatingPointError, match=r"the grounding loss became nan at update 3 \(grounding\)"):
        _run(tiny_corpus, tmp_path, log_every=0)  # found at the check before the checkpoint at update 5
    assert CheckpointManager(tmp_path / "out" / "checkpoints").checkpoints() == []
