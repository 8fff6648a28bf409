"""``hvl evaluate`` and the per-task evaluation functions on a generated demo corpus with a fresh tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.cli import main
from hierarchical_vl.data import (
    build_vqa_answer_vocab,
    generate_demo_corpus,
    iter_json_array,
    load_vqa,
)
from hierarchical_vl.evaluation import (
    CorpusLayout,
    evaluate_grounding,
    evaluate_retrieval,
    evaluate_tasks,
    evaluate_vqa,
    load_evaluation_data,
    model_tasks,
)
from hierarchical_vl.metrics import read_vqa_submission

VQA_KEYS = {"vqa/overall", "vqa/yes/no", "vqa/number", "vqa/other"}
RETRIEVAL_KEYS = {f"retrieval/{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
GROUNDING_KEYS = {"grounding/r1", "grounding/r5", "grounding/r10", "grounding/upper_bound"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 30-image demo corpus with 20-d features, and fresh tiny checkpoints built from its text."""
    root = tmp_path_factory.mktemp("demo")
    paths = generate_demo_corpus(
        root / "corpus",
        num_images=30,
        seed=0,
        feature_dim=20,
        min_regions=4,
        max_regions=12,
        questions_per_image=3,
    )
    texts = [q["question"] for file in paths.vqa_questions.values() for q in iter_json_array(file, "questions")]
    texts += [s["raw"] for image in iter_json_array(paths.karpathy_captions, "images") for s in image["sentences"]]
    tokenizer = HierarchicalVLTokenizer.from_texts(texts)
    answers = build_vqa_answer_vocab(paths.vqa_annotations["train2014"], min_count=1)
    config = HierarchicalVLConfig.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(answers)),
        label2id={answer: index for index, answer in enumerate(answers)},
    )
    checkpoints = {}
    for name, cls in (
        ("multitask", HierarchicalVLForMultiTask),
        ("retrieval", HierarchicalVLForImageTextRetrieval),
    ):
        torch.manual_seed(0)
        checkpoints[name] = root / name
        cls(config).save_pretrained(checkpoints[name])
        HierarchicalVLProcessor(tokenizer).save_pretrained(checkpoints[name])
    return {"root": root, "corpus": paths.root, "paths": paths, "tokenizer": tokenizer, **checkpoints}


def _evaluate(demo, *arguments):
    return main(["evaluate", str(demo["multitask"]), "--data-dir", str(demo["corpus"]), "--no-progress", *arguments])


def test_evaluate_all_tasks_prints_the_tables_and_writes_json(demo, tmp_path, capsys):
    output = tmp_path / "results.json"
    assert _evaluate(demo, "--task", "all", "--split", "val", "--output", str(output)) == 0
    printed = capsys.readouterr().out
    for heading in (
        "VQA 2.0 (val",
        "Overall",
        "Yes/No",
        "Image-caption retrieval (val",
        "Image annotation",
        "Image retrieval",
        "Phrase grounding (val",
        "Upper bound",
    ):
        assert heading in printed
    result = json.loads(output.read_text())
    metrics = result["metrics"]
    assert result["splits"] == {"vqa": "val", "retrieval": "val", "grounding": "val"}
    assert VQA_KEYS | RETRIEVAL_KEYS | GROUNDING_KEYS <= set(metrics)
    for key in VQA_KEYS | RETRIEVAL_KEYS | GROUNDING_KEYS:
        assert 0.0 <= metrics[key] <= 100.0, key
    assert (
        metrics["retrieval/i2t_medr"] >= 1 and metrics["retrieval/num_captions"] == 5 * metrics["retrieval/num_images"]
    )
    predictions = read_vqa_submission(result["info"]["vqa_predictions"])
    assert len(predictions) == metrics["vqa/num_questions"] > 0
    assert not list(tmp_path.glob("*.tmp"))


def test_two_stage_retrieval_reports_agreement_and_resumes(demo, tmp_path, capsys):
    output, cache = tmp_path / "retrieval.json", tmp_path / "cache"
    arguments = (
        "--task",
        "retrieval",
        "--split",
        "test",
        "--shortlist",
        "2",
        "--first-stage",
        "first-layer",
        "--shortlist-check",
        "--cache-dir",
        str(cache),
        "--output",
        str(output),
    )
    assert _evaluate(demo, *arguments) == 0
    first = json.loads(output.read_text())
    assert "shortlist vs exact ranking" in capsys.readouterr().out
    metrics = first["metrics"]
    agreement = {key for key in metrics if key.startswith("retrieval/shortlist/")}
    assert agreement == {
        f"retrieval/shortlist/{name}"
        for name in ("i2t_top1", "t2i_top1", "i2t_top10_coverage", "t2i_top10_coverage", "pairs_scored")
    }
    assert all(0.0 <= metrics[key] <= 100.0 for key in agreement)
    assert {f"retrieval/exact/{key.split('/')[-1]}" for key in RETRIEVAL_KEYS} <= set(metrics)
    # A rerun reads every block back from the cache and reports the same numbers.
    assert _evaluate(demo, *arguments) == 0
    second = json.loads(output.read_text())
    assert second["metrics"] == metrics
    assert second["info"]["retrieval_last_matrix"]["pairs_scored"] == 0


def test_unannotated_vqa_split_writes_the_submission_only(demo, tmp_path, capsys):
    predictions = tmp_path / "test_predictions.json"
    assert _evaluate(demo, "--task", "vqa", "--split", "test", "--vqa-predictions", str(predictions)) == 0
    assert "no annotations for this split" in capsys.readouterr().out
    assert len(read_vqa_submission(predictions)) > 0


def test_single_task_checkpoint_and_errors(demo, capsys):
    arguments = ["--data-dir", str(demo["corpus"]), "--no-progress", "--split", "val"]
    assert main(["evaluate", str(demo["retrieval"]), "--task", "all", *arguments]) == 0
    printed = capsys.readouterr().out
    assert "Image-caption retrieval" in printed and "VQA 2.0" not in printed
    assert main(["evaluate", str(demo["retrieval"]), "--task", "vqa", *arguments]) == 1
    assert "no vqa decoder" in capsys.readouterr().err
    assert main(["evaluate", str(demo["root"] / "missing"), *arguments]) == 1
    assert "not a saved model directory" in capsys.readouterr().err


def test_library_functions_on_rows_and_fold_protocols(demo):
    model = HierarchicalVLForMultiTask.from_pretrained(demo["multitask"])
    tokenizer = demo["tokenizer"]
    data = load_evaluation_data(
        CorpusLayout(root=demo["corpus"]),
        ["vqa", "retrieval", "grounding"],
        "test",
        tokenizer,
        answer_vocab=[model.config.id2label[i] for i in range(model.config.num_answers)],
        splits={"vqa": "val"},
        progress=False,
    )
    assert model_tasks(model) == ["grounding", "retrieval", "vqa"]
    # VQA from rows + tokenizer + store equals VQA from the encoded dataset.
    rows = load_vqa(
        demo["paths"].vqa_questions["val2014"].parent,
        split="val",
        streaming=True,
        answer_vocab=data.vqa.answer_vocab,
    )
    from_rows = evaluate_vqa(model, rows, tokenizer=HierarchicalVLProcessor(tokenizer), store=data.store, batch_size=7)
    assert from_rows == evaluate_vqa(model, data.vqa, batch_size=64)
    legacy = evaluate_vqa(model, data.vqa, legacy=True)
    assert set(legacy) == set(from_rows)
    # Single-task heads evaluate their own task.
    vqa_head = HierarchicalVLForVisualQuestionAnswering(model.config)
    assert set(evaluate_vqa(vqa_head, data.vqa)) == set(from_rows)
    grounding = evaluate_grounding(HierarchicalVLForVisualGrounding(model.config), data.grounding, batch_size=5)
    assert GROUNDING_KEYS <= set(grounding) and grounding["grounding/num_phrases"] > 0
    with pytest.raises(ValueError, match="no grounding decoder"):
        evaluate_grounding(vqa_head, data.grounding)
    # Folds scored on their own equal the folds cut out of the full matrix.
    n_images = len(data.retrieval.images)
    per_fold = evaluate_retrieval(model, data.retrieval, protocol="1k", fold_size=1)
    both = evaluate_retrieval(model, data.retrieval, protocol="both", fold_size=1)
    assert {k: v for k, v in both.items() if k.startswith("retrieval/1k/")} == {
        k: v for k, v in per_fold.items() if k.startswith("retrieval/1k/")
    }
    assert both["retrieval/num_images"] == n_images and "retrieval/i2t_r1" in both
    with pytest.raises(ValueError, match="multiple of"):
        evaluate_retrieval(model, data.retrieval, protocol="1k", fold_size=1000)
    model.train()
    merged = evaluate_tasks(
        model, {"retrieval": data.retrieval, "vqa": data.vqa}, batch_size=16, retrieval={"shortlist": 2}
    )
    assert merged["retrieval/shortlist_k"] == 2 and "vqa/overall" in merged
    assert model.training  # evaluation runs in eval mode and gives the model back as it was
    assert merged["vqa/overall"] == from_rows["vqa/overall"]  # dropout was off
