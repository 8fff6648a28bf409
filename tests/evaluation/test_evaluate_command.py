"""``hvl evaluate`` and the per-task evaluation functions on a generated demo corpus with a fresh tiny model."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from hierarchical_vl import (
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLProcessor,
)
from hierarchical_vl.cli import main
from hierarchical_vl.data import (
    iter_json_array,
    load_vqa,
)
from hierarchical_vl.data.collators import region_tensors, text_tensors
from hierarchical_vl.evaluation import (
    PROTOCOLS,
    CorpusLayout,
    EvaluationProtocol,
    RetrievalScorer,
    evaluate_grounding,
    evaluate_retrieval,
    evaluate_tasks,
    evaluate_vqa,
    load_evaluation_data,
    model_tasks,
)
from hierarchical_vl.evaluation.baselines import PRIOR_NAMES
from hierarchical_vl.metrics import coco_1k_5fold, read_vqa_submission, retrieval_recall, vqa_accuracy

VQA_KEYS = {"vqa/overall", "vqa/yes/no", "vqa/number", "vqa/other"}
RETRIEVAL_KEYS = {f"retrieval/{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
GROUNDING_KEYS = {"grounding/r1", "grounding/r5", "grounding/r10", "grounding/upper_bound"}


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
    summary = printed.strip().splitlines()[-1]  # the command ends with one line: headline metrics and the file
    assert summary == (
        f"evaluated {demo['multitask']} on {', '.join(f'{task} val' for task in result['splits'])}: "
        f"vqa/overall {metrics['vqa/overall']:.2f}, retrieval/i2t_r1 {metrics['retrieval/i2t_r1']:.2f}, "
        f"retrieval/t2i_r1 {metrics['retrieval/t2i_r1']:.2f}, grounding/r1 {metrics['grounding/r1']:.2f}; "
        f"results in {output}"
    )


def test_evaluate_shows_and_writes_the_prior_rows(demo, tmp_path, capsys):
    output = tmp_path / "results.json"
    assert _evaluate(demo, "--task", "all", "--split", "val", "--output", str(output)) == 0
    printed = capsys.readouterr().out
    result = json.loads(output.read_text())
    priors, metrics = result["priors"], result["metrics"]
    assert list(priors) == list(PRIOR_NAMES)
    assert result["info"]["vqa_prior_splits"] == ["train"]
    # The VQA prior by hand: the most frequent train answer of each question type (ties: alphabetical).
    counts: dict[str, Counter] = {}
    for record in iter_json_array(demo["paths"].vqa_annotations["train2014"], "annotations"):
        counts.setdefault(record["question_type"], Counter())[record["multiple_choice_answer"]] += 1
    overall = sum(counts.values(), Counter())
    best = {kind: min(c, key=lambda a, c=c: (-c[a], a)) for kind, c in counts.items()}
    fallback = min(overall, key=lambda a: (-overall[a], a))
    val = list(iter_json_array(demo["paths"].vqa_annotations["val2014"], "annotations"))
    expected = vqa_accuracy(
        {r["question_id"]: best.get(r["question_type"], fallback) for r in val},
        {r["question_id"]: r["answers"] for r in val},
        {r["question_id"]: r["answer_type"] for r in val},
        question_types={r["question_id"]: r["question_type"] for r in val},
    )
    vqa_prior = priors["most frequent answer per question type"]
    assert vqa_prior["vqa/overall"] == expected["overall"]
    assert {k: vqa_prior[f"vqa/{k}"] for k in expected["per_answer_type"]} == expected["per_answer_type"]
    assert {k: vqa_prior[f"vqa/question_type/{k}"] for k in expected["per_question_type"]} == expected[
        "per_question_type"
    ]
    # The model's own per-question-type accuracies are there too, for the same types.
    assert {k for k in metrics if k.startswith("vqa/question_type/")} == {
        k for k in vqa_prior if k.startswith("vqa/question_type/")
    }
    # Retrieval chance with 5 captions per image: R@1 is 1 / #images both ways.
    n_images = metrics["retrieval/num_images"]
    assert priors["chance"]["retrieval/i2t_r1"] == priors["chance"]["retrieval/t2i_r1"] == round(100 / n_images, 2)
    assert priors["chance"]["grounding/num_phrases"] == metrics["grounding/num_phrases"]
    assert priors["chance"]["grounding/upper_bound"] == metrics["grounding/upper_bound"]
    for name in ("largest box", "first box"):
        assert 0.0 <= priors[name]["grounding/r1"] <= priors[name]["grounding/r5"] <= 100.0
    for name in (*PRIOR_NAMES, "VQA accuracy per question type"):
        assert name in printed
    assert _evaluate(demo, "--task", "grounding", "--split", "val", "--no-priors") == 0
    assert "largest box" not in capsys.readouterr().out


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


# ---------------------------------------------------------------------------------------------------------------
# Evaluation protocols (``--protocol paper|current``)


def _annotations(demo, split="val2014"):
    references, types = {}, {}
    for annotation in iter_json_array(demo["paths"].vqa_annotations[split], "annotations"):
        references[annotation["question_id"]] = [answer["answer"] for answer in annotation["answers"]]
        types[annotation["question_id"]] = annotation["answer_type"]
    return references, types


@pytest.mark.parametrize(("protocol", "legacy"), [("paper", True), ("current", False)])
def test_protocol_scores_vqa_with_its_metric_version_and_records_itself(demo, tmp_path, protocol, legacy):
    output = tmp_path / "vqa.json"
    assert _evaluate(demo, "--task", "vqa", "--split", "val", "--protocol", protocol, "--output", str(output)) == 0
    result = json.loads(output.read_text())
    assert result["protocol"] == PROTOCOLS[protocol].to_dict()
    assert result["legacy_vqa"] is legacy
    predictions = read_vqa_submission(result["info"]["vqa_predictions"])
    references, types = _annotations(demo)
    expected = vqa_accuracy(predictions, {q: references[q] for q in predictions}, types, legacy=legacy)
    assert result["metrics"]["vqa/overall"] == expected["overall"]
    assert {f"vqa/{t}": v for t, v in expected["per_answer_type"].items()} == {
        k: v for k, v in result["metrics"].items() if k in VQA_KEYS - {"vqa/overall"}
    }


def test_paper_protocol_records_every_field_and_its_grounding_rule(demo, tmp_path, capsys):
    output = tmp_path / "paper.json"
    assert _evaluate(demo, "--split", "val", "--protocol", "paper", "--output", str(output)) == 0
    assert "evaluation protocol: paper+coco_retrieval=full" in capsys.readouterr().out
    result = json.loads(output.read_text())
    # 30 demo images are no multiple of 1,000: the COCO ranking falls back to the whole split, and says so.
    paper = PROTOCOLS["paper"].with_overrides(coco_retrieval="full")
    assert result["protocol"] == paper.to_dict()
    assert set(result["protocol"]) == {f.name for f in dataclasses.fields(EvaluationProtocol)}
    assert result["info"]["retrieval_protocol"] == "full"
    # Grounding was scored with merged boxes: the same numbers as the function with box_matching="merged".
    model = HierarchicalVLForMultiTask.from_pretrained(demo["multitask"])
    data = load_evaluation_data(
        CorpusLayout(root=demo["corpus"]), ["grounding"], "val", demo["tokenizer"], config=model.config, progress=False
    )
    merged = evaluate_grounding(model, data.grounding, box_matching="merged")
    assert {k: v for k, v in result["metrics"].items() if k.startswith("grounding/")} == merged


def test_single_field_flags_override_the_protocol(demo, tmp_path):
    output = tmp_path / "overridden.json"
    arguments = ("--task", "grounding", "--split", "val", "--output", str(output))
    assert _evaluate(demo, *arguments, "--legacy-vqa", "--box-matching", "merged") == 0
    result = json.loads(output.read_text())
    assert result["protocol"]["name"] == "current+vqa_metric=legacy+box_matching=merged"
    assert result["protocol"]["vqa_metric"] == "legacy" and result["protocol"]["box_matching"] == "merged"
    assert result["legacy_vqa"] is True
    assert _evaluate(demo, "--protocol", "paper", "--box-matching", "any", *arguments) == 0
    result = json.loads(output.read_text())
    assert result["protocol"] == PROTOCOLS["paper"].with_overrides(box_matching="any").to_dict()


def test_old_retrieval_protocol_spellings_still_work_with_a_deprecation_warning(demo, tmp_path, capsys):
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    arguments = ("--task", "retrieval", "--split", "test")
    assert _evaluate(demo, *arguments, "--retrieval-protocol", "full", "--output", str(new)) == 0
    with pytest.warns(FutureWarning, match="--protocol full is deprecated.*--retrieval-protocol full"):
        assert _evaluate(demo, *arguments, "--protocol", "full", "--output", str(old)) == 0
    old_result, new_result = json.loads(old.read_text()), json.loads(new.read_text())
    assert old_result["metrics"] == new_result["metrics"]
    assert old_result["protocol"] == new_result["protocol"] == PROTOCOLS["current"].to_dict()
    capsys.readouterr()
    with pytest.warns(FutureWarning):
        assert _evaluate(demo, *arguments, "--protocol", "1k", "--retrieval-protocol", "full") == 1
    assert "--protocol 1k contradicts --retrieval-protocol full" in capsys.readouterr().err
    # An explicit fold ranking keeps its error on a split of another size (it is not silently replaced).
    assert _evaluate(demo, *arguments, "--retrieval-protocol", "1k") == 1
    assert "multiple of 1000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _evaluate(demo, *arguments, "--protocol", "bogus")


def test_protocol_fold_ranking_equals_coco_1k_5fold_on_the_same_scores(demo):
    model = HierarchicalVLForMultiTask.from_pretrained(demo["multitask"])
    data = load_evaluation_data(
        CorpusLayout(root=demo["corpus"]), ["retrieval"], "val", demo["tokenizer"], config=model.config, progress=False
    )
    n_images = len(data.retrieval.images)
    fold = next(size for size in (5, 3, 2, 1) if n_images % size == 0 and n_images > size)
    protocol = PROTOCOLS["paper"].with_overrides(retrieval_fold_size=fold)
    options = protocol.task_options("retrieval", caption_corpus="coco", num_images=n_images)
    assert options == {"protocol": "both", "fold_size": fold}
    metrics = evaluate_retrieval(model, data.retrieval, **options)
    # The reference: the exact score matrix, ranked whole (5K) and in folds (1K) by the metric functions.
    text = text_tensors(data.retrieval, np.arange(len(data.retrieval)))
    image, _ = region_tensors(data.store, data.retrieval.images_store_index, model.config.max_regions)
    matrix = RetrievalScorer(model).score_matrix(text, image, progress=False)
    caption_image = data.retrieval.caption_image
    folds = coco_1k_5fold(matrix, caption_image, num_folds=n_images // fold, fold_size=fold)
    assert {k[len("retrieval/1k/") :]: v for k, v in metrics.items() if k.startswith("retrieval/1k/")} == folds
    full = retrieval_recall(matrix, caption_image)
    assert {name: metrics[f"retrieval/{name}"] for name in full} == full
    # Flickr30k's 1K test is its whole split.
    assert protocol.task_options("retrieval", caption_corpus="flickr30k", num_images=n_images)["protocol"] == "full"
