"""The evaluation protocol of a training run: arguments, answer pool, evaluation cap, labels, records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hierarchical_vl.data import build_vqa_answer_vocab, vqa_data_files
from hierarchical_vl.evaluation import PROTOCOLS, evaluate_grounding, evaluate_retrieval, evaluate_vqa
from hierarchical_vl.metrics import normalize_vqa_answer
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.run import build_model, make_evaluate_fn, prepare_data, train_from_arguments

from .conftest import write_config

_TASKS = ("grounding", "retrieval", "vqa")


def _config(tmp_path, corpus, **changes):
    return write_config(
        tmp_path / "config.yaml",
        corpus,
        tmp_path / "out",
        tasks={task: {"iterations": 2, "lr_step": 2, "batch_size": 4} for task in _TASKS},
        curriculum=[{"name": "all", "tasks": list(_TASKS), "cycle_length": 3}],
        **changes,
    )


def test_protocol_argument_and_its_overrides(tiny_corpus, tmp_path):
    config = _config(tmp_path, tiny_corpus)
    args = load_training_arguments(config)
    assert args.protocol == "current" and args.evaluation_protocol() is PROTOCOLS["current"]
    paper = load_training_arguments(config, ["protocol=paper"]).evaluation_protocol()
    assert paper is PROTOCOLS["paper"]
    overridden = load_training_arguments(
        config, ["protocol=paper", "data.eval_max_images=0", "data.answer_normalization=text"]
    ).evaluation_protocol()
    assert overridden.name == "paper+eval_max_images=None+answer_normalization=text"
    assert overridden.eval_max_images is None and overridden.answer_pool_splits == ("train", "val")
    with pytest.raises(ValueError, match=r"protocol: unknown evaluation protocol 'cvpr'"):
        load_training_arguments(config, ["protocol=cvpr"])
    with pytest.raises(ValueError, match="data.eval_max_images must be a non-negative integer"):
        load_training_arguments(config, ["data.eval_max_images=-1"])
    with pytest.raises(
        ValueError, match=r"data: protocol 'current\+answer_normalization=lower': answer_normalization must be one of"
    ):
        load_training_arguments(config, ["data.answer_normalization=lower"])


def test_a_run_saved_before_protocols_resumes_unless_the_protocol_changes(tiny_corpus, tmp_path):
    # Such a file's Karpathy 'train' held restval: the same run today names [train, restval].
    args = load_training_arguments(_config(tmp_path, tiny_corpus), ["data.caption_train_splits=[train, restval]"])
    saved = args._saved_form()
    saved["data"]["caption_train_splits"] = ["train"]
    del saved["protocol"]
    for name in ("eval_max_images", "answer_pool_splits", "answer_normalization"):
        del saved["data"][name]
    (tmp_path / "old_args.yaml").write_text(yaml.safe_dump(saved))
    assert args.run_differences(tmp_path / "old_args.yaml") == []
    paper = load_training_arguments(
        _config(tmp_path, tiny_corpus),
        ["data.caption_train_splits=[train, restval]", "protocol=paper", "data.eval_max_images=5"],
    )
    assert paper.run_differences(tmp_path / "old_args.yaml") == [
        "data.eval_max_images: '<absent>' -> 5",
        "protocol: '<absent>' -> 'paper'",
    ]


def _images(dataset):
    return len(set(np.asarray(dataset.image_ids).tolist()))


def test_paper_protocol_prepares_its_pool_cap_and_labels_and_evaluates_by_it(tiny_corpus, tmp_path):
    config = _config(tmp_path, tiny_corpus)
    current = prepare_data(load_training_arguments(config))
    args = load_training_arguments(config, ["protocol=paper", "data.eval_max_images=3"])
    paper = prepare_data(args)
    assert paper.protocol.name == "paper+eval_max_images=3" and current.protocol is PROTOCOLS["current"]
    assert paper.caption_corpus == "coco"
    # The evaluation splits: the first 3 images of each, with all their examples.
    for task in _TASKS:
        assert _images(paper.eval[task]) == 3 < _images(current.eval[task]), task
    assert len(paper.eval["retrieval"].images) == 3 and len(paper.eval["retrieval"]) == 15
    first = list(dict.fromkeys(np.asarray(current.eval["vqa"].image_ids).tolist()))[:3]
    ids = np.asarray(current.eval["vqa"].image_ids)
    assert len(paper.eval["vqa"]) == int(np.isin(ids, first).sum())
    # The answer pool of [34]: answers of VQA train+val seen more than min_answer_frequency times, normalised
    # the official way; the current protocol counts the training split with text normalisation.
    files = vqa_data_files(tiny_corpus / "vqa")
    both = [files["train"][1], files["val"][1]]
    assert paper.answer_vocab == build_vqa_answer_vocab(both, min_count=1, normalize=normalize_vqa_answer)
    assert current.answer_vocab == build_vqa_answer_vocab(files["train"][1], min_count=1)
    # Grounding labels follow the protocol's box matching.
    assert paper.collators["grounding"].box_matching == "merged"
    assert current.collators["grounding"].box_matching == "any"
    # The trainer's evaluation scores as the protocol says.
    model = build_model(args, paper)
    metrics = make_evaluate_fn(paper, 16)(model, list(_TASKS))
    expected = {
        **evaluate_vqa(model, paper.eval["vqa"], legacy=True),
        **evaluate_retrieval(model, paper.eval["retrieval"]),  # 3 images: one ranking over the split
        **evaluate_grounding(model, paper.eval["grounding"], box_matching="merged"),
    }
    assert metrics == expected


def test_the_run_records_its_protocol(tiny_corpus, tmp_path):
    args = load_training_arguments(_config(tmp_path, tiny_corpus), ["protocol=paper", "data.eval_max_images=4"])
    result = train_from_arguments(args)
    protocol = PROTOCOLS["paper"].with_overrides(eval_max_images=4).to_dict()
    assert result.protocol == protocol
    assert result.evaluations and "grounding/r1" in result.evaluations[-1]
    (checkpoint,) = sorted((tmp_path / "out" / "checkpoints").glob("step-*"))[-1:]
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["protocol"] == protocol and state["evaluations"] == result.evaluations
    assert yaml.safe_load((tmp_path / "out" / "training_args.yaml").read_text())["protocol"] == "paper"
