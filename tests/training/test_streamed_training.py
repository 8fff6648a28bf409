"""Training from streamed region features (a Parquet export of the tiny corpus's store): every example once per
epoch, exact resumption after a kill, and the same evaluation as from the store."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hierarchical_vl.cli import main
from hierarchical_vl.data import export_store_to_parquet
from hierarchical_vl.evaluation.evaluation_data import open_region_store
from hierarchical_vl.tasks import task_spec
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.batching import make_task_batches
from hierarchical_vl.training.checkpointing import CheckpointManager
from hierarchical_vl.training.run import build_model, make_evaluate_fn, prepare_data, train_from_arguments
from hierarchical_vl.training.trainer import MultiTaskTrainer, TrainerCallback

from .conftest import write_config


class _Killed(RuntimeError):
    pass


class _KillAt(TrainerCallback):
    def __init__(self, update):
        self.update = update

    def on_update_end(self, trainer, state):
        if state.update == self.update:
            raise _Killed(f"killed after update {state.update}")


@pytest.fixture(scope="module")
def export(tiny_corpus, tmp_path_factory):
    store = open_region_store("features/region_features.tsv", progress=False, root=tiny_corpus)
    out = tmp_path_factory.mktemp("export") / "tiny.parquet"
    export_store_to_parquet(store, out, rows_per_shard=7, progress=False)
    return out


def _streamed_config(path, corpus, export, output_dir, **changes):
    data = {
        "root": str(corpus),
        "min_answer_frequency": 0,
        "max_regions": 12,
        "features": f"parquet:{export}",
        "stream_buffer_size": 8,
        "stream_window_images": 10,
    }
    return write_config(path, corpus, output_dir, data=data, **changes)


@pytest.fixture(scope="module")
def streamed(tiny_corpus, export, tmp_path_factory):
    directory = tmp_path_factory.mktemp("streamed")
    args = load_training_arguments(_streamed_config(directory / "config.yaml", tiny_corpus, export, directory / "out"))
    prepared = prepare_data(args)
    result = train_from_arguments(args, prepared)
    return directory / "out", result, prepared


def _weights(directory):
    return load_file(str(Path(directory) / "model.safetensors"))


def test_streamed_run_trains_and_evaluates(streamed):
    out, result, prepared = streamed
    assert result.updates == 8 + 20
    assert set(prepared.streams) == {"grounding", "vqa"}
    assert result.evaluations[0]["stage"] == "grounding" and "grounding/r1" in result.evaluations[0]
    assert np.isfinite(result.final_losses["vqa"]) and result.final_losses["vqa"] > 0
    assert (out / "model.safetensors").exists()


def test_streamed_run_resumes_to_identical_weights(streamed, tiny_corpus, export, tmp_path):
    out, _, prepared = streamed
    config = _streamed_config(tmp_path / "config.yaml", tiny_corpus, export, tmp_path / "out")
    args = load_training_arguments(config)
    trainer = MultiTaskTrainer(
        build_model(args, prepared),
        args,
        prepared.sources(),
        make_evaluate_fn(prepared, args.eval_batch_size),
        callbacks=[_KillAt(13)],
    )
    with pytest.raises(_Killed):
        trainer.train()
    assert CheckpointManager(tmp_path / "out" / "checkpoints").checkpoints()[-1].name == "step-00000010"
    train_from_arguments(load_training_arguments(config), prepared)
    reference, resumed = _weights(out), _weights(tmp_path / "out")
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key


def _example_ids(batch):
    return batch["input_ids"][:, :6].tolist(), batch["region_features"].sum(dim=(1, 2)).tolist()


def test_streamed_batches_cover_each_epoch_and_resume_exactly(streamed):
    _, _, prepared = streamed
    source = prepared.sources()["vqa"]
    num_examples = source.num_examples
    batches = make_task_batches(source, 4, seed=7)
    sizes, first = [], []
    while sum(sizes) < 2 * num_examples:  # two whole epochs
        batch = next(batches)
        sizes.append(len(batch["input_ids"]))
        first.append(_example_ids(batch))
    assert sum(sizes) == 2 * num_examples  # each example once per epoch (windows end with smaller batches)
    per_epoch = np.cumsum(sizes).tolist().index(num_examples) + 1
    assert first[:per_epoch] != first[per_epoch : 2 * per_epoch]  # epoch 1 reshuffled

    again = make_task_batches(source, 4, seed=7)
    for _ in range(5):
        next(again)
    state = again.state_dict()
    assert again.batch(5)["input_ids"].shape[0] > 0 and again.batch(6) is not None  # prepared ahead
    resumed = make_task_batches(source, 4, seed=7)
    resumed.load_state_dict(state)
    for number in range(5, len(first)):
        assert _example_ids(next(resumed)) == first[number]
        assert _example_ids(next(again)) == first[number]  # the kept batches, then the stream


def test_streamed_batches_refuse_several_processes_and_length_grouping(streamed):
    _, _, prepared = streamed
    source = prepared.sources()["vqa"]
    with pytest.raises(ValueError, match="one process only"):
        make_task_batches(source, 4, seed=7, rank=0, world_size=2)
    with pytest.raises(ValueError, match="group_by_length"):
        make_task_batches(source, 4, seed=7, group_by_length=True)


def test_evaluation_from_the_stream_equals_the_store(streamed, tiny_corpus, tmp_path):
    out, _, prepared = streamed
    local = prepare_data(load_training_arguments(write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path)))
    assert set(local.eval) == set(prepared.eval) == {"grounding"}
    model = build_model(load_training_arguments(write_config(tmp_path / "c.yaml", tiny_corpus, tmp_path)), local)
    model.eval()
    for task, dataset in prepared.eval.items():
        assert len(dataset) == len(local.eval[task])
        assert len(dataset.store) < len(prepared.store)  # the split's images only
        collate = task_spec(task).make_collator(dataset, prepared.config)
        reference = task_spec(task).make_collator(local.eval[task], local.config)
        streamed_batch, local_batch = collate(np.arange(len(dataset))), reference(np.arange(len(dataset)))
        torch.testing.assert_close(streamed_batch["region_features"], local_batch["region_features"])
    with torch.no_grad():
        from_stream = make_evaluate_fn(prepared)(model, ["grounding"])
        from_store = make_evaluate_fn(local)(model, ["grounding"])
    assert from_stream == from_store and from_stream


def test_hvl_train_streams_retrieval_from_the_command_line(tiny_corpus, export, tmp_path, capsys):
    config = write_config(
        tmp_path / "config.yaml",
        tiny_corpus,
        tmp_path / "out",
        tasks={"retrieval": {"iterations": 6, "lr_step": 3, "batch_size": 4}},
        curriculum=[{"name": "retrieval", "tasks": ["retrieval"], "cycle_length": 3}],
    )
    code = main(["train", str(config), f"data.features=parquet:{export}", "data.stream_window_images=10"])
    assert code == 0
    assert "trained 6 updates" in capsys.readouterr().out
    state = CheckpointManager.verify(CheckpointManager(tmp_path / "out" / "checkpoints").checkpoints()[-1])
    stream = state["data"]["retrieval"]["stream"]["features"]
    assert stream["window_images"] == 10 and stream["seed"] == 7
    assert load_training_arguments(tmp_path / "out" / "training_args.yaml").data.features == f"parquet:{export}"
