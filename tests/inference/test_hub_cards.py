"""Model cards from a checkpoint's own records: training arguments, the trainer's evaluations, evaluate output."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml

from hierarchical_vl import HierarchicalVLForMultiTask, HierarchicalVLForVisualQuestionAnswering
from hierarchical_vl.cli import main
from hierarchical_vl.hub import render_checkpoint_card, render_model_card, save_for_hub
from hierarchical_vl.loading import save_model_with_checksums
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training_records import TRAINING_LOG_FILE, card_data_from_records

VQA_EVALUATION = {
    "update": 400,
    "stage": "vqa",
    "vqa/num_questions": 648,
    "vqa/overall": 61.5,
    "vqa/yes/no": 70.25,
    "vqa/number": 40.0,
    "vqa/other": 55.5,
    "vqa/question_type/how many": 40.0,
}
EVALUATE_OUTPUT = {
    "checkpoint": "outputs/multitask",
    "data_dir": "corpus",
    "splits": {"retrieval": "test", "grounding": "test"},
    "protocol": {"name": "paper", "vqa_metric": "legacy"},
    "legacy_vqa": True,
    "metrics": {
        "retrieval/num_images": 100,
        "retrieval/i2t_r1": 12.5,
        "retrieval/t2i_r1": 10.25,
        "retrieval/i2t_medr": 9.0,
        "grounding/r1": 48.75,
        "grounding/num_phrases": 700,
    },
    "priors": {},
    "info": {},
}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _metrics_of(metadata: dict) -> dict[tuple[str, str, str], float]:
    """(dataset, split, metric name) -> value of a model-index."""
    (entry,) = metadata["model-index"]
    return {
        (result["dataset"]["name"], result["dataset"].get("split", ""), metric["name"]): metric["value"]
        for result in entry["results"]
        for metric in result["metrics"]
    }


@pytest.fixture(scope="module")
def single_vqa(tmp_path_factory, tiny_config) -> Path:
    """A single-task VQA run's output directory: arguments, training log, model."""
    directory = tmp_path_factory.mktemp("cards") / "single_vqa"
    args = load_training_arguments("single_vqa", [f"output_dir={directory}", "data.root=corpus"])
    directory.mkdir()
    args.save(directory / "training_args.yaml")
    (directory / TRAINING_LOG_FILE).write_text(
        json.dumps({"losses": [[1, "vqa", 0.7]], "evaluations": [VQA_EVALUATION], "stage_updates": {"vqa": 400}})
    )
    torch.manual_seed(0)
    save_model_with_checksums(HierarchicalVLForVisualQuestionAnswering(tiny_config).eval(), directory)
    return directory


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, tiny_config) -> Path:
    """An all-task run of the demo configuration, of an older version: evaluations only in its last checkpoint."""
    directory = tmp_path_factory.mktemp("cards") / "multitask"
    args = load_training_arguments("demo", [f"output_dir={directory}"])
    directory.mkdir()
    args.save(directory / "training_args.yaml")
    evaluation = {"update": 1360, "stage": args.curriculum[-1].name, "vqa/overall": 47.96, "grounding/r1": 47.24}
    for step, evaluations in ((320, []), (1360, [evaluation])):
        folder = directory / "checkpoints" / f"step-{step:08d}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"updates": step, "evaluations": evaluations}))
    torch.manual_seed(0)
    save_model_with_checksums(HierarchicalVLForMultiTask(tiny_config).eval(), directory)
    return directory


def test_single_task_card_says_single_task_and_has_its_evaluation(single_vqa):
    card = render_checkpoint_card(single_vqa)
    assert "Single-task training (Visual question answering)" in card
    assert "no task switching and no curriculum" in card
    assert "Curriculum of this checkpoint" not in card and "Algorithm 1" not in card
    assert "Training of this checkpoint: Visual question answering (#iter vqa 400; 400 updates)." in card
    assert "- Visual question answering: VQA 2.0, trained on train, evaluated on val" in card
    assert "- Evaluation protocol: current" in card and "Not documented" not in card
    assert "| Visual question answering | VQA 2.0 | val | vqa/overall | 61.50 |" in card
    assert "num_questions" not in card and "question_type" not in card  # counts and per-type rows left out
    assert "has not been evaluated" not in card
    metadata = _front_matter(card)
    assert _metrics_of(metadata) == {
        ("VQA 2.0", "val", "vqa/overall"): 61.5,
        ("VQA 2.0", "val", "vqa/yes/no"): 70.25,
        ("VQA 2.0", "val", "vqa/number"): 40.0,
        ("VQA 2.0", "val", "vqa/other"): 55.5,
    }
    (result,) = metadata["model-index"][0]["results"]
    assert result["task"] == {"type": "visual-question-answering", "name": "Visual question answering"}
    assert result["dataset"]["type"] == "vqa_v2"
    assert {metric["type"] for metric in result["metrics"]} == {"accuracy"}
    assert metadata["model-index"][0]["name"] == "single_vqa"
    # the Hub's own parser reads the evaluation results
    parsed = huggingface_hub.ModelCard(card).data.eval_results
    assert {(r.dataset_name, r.dataset_split, r.metric_name, r.metric_value) for r in parsed} >= {
        ("VQA 2.0", "val", "vqa/overall", 61.5)
    }


def test_multitask_card_lists_the_stages_and_reads_old_checkpoints(multitask_run):
    card = render_checkpoint_card(multitask_run)
    assert "Algorithm 1" in card and "Single-task training" not in card
    assert "Curriculum of this checkpoint:" in card
    assert "1. Visual grounding (cycle C = 40; #iter grounding 80)" in card
    assert "3. Visual grounding + Image-caption retrieval + Visual question answering (cycle C = 40; #iter " in card
    assert "- Image-caption retrieval: COCO Captions (Karpathy splits), trained on train + restval" in card
    # the evaluation of the last checkpoint (version 0.1 runs wrote no training log)
    assert "| Visual question answering | VQA 2.0 | val | vqa/overall | 47.96 |" in card
    assert "| Visual grounding | Flickr30k Entities | test | grounding/r1 | 47.24 |" in card
    assert _metrics_of(_front_matter(card))[("Flickr30k Entities", "test", "grounding/r1")] == 47.24


def test_evaluate_output_is_accepted_as_results(tiny_config, multitask_run, tmp_path):
    model = HierarchicalVLForMultiTask(tiny_config)
    card = render_model_card(model, {"results": EVALUATE_OUTPUT})  # refused before
    assert "| Image-caption retrieval | Karpathy captions | test | retrieval/i2t_r1 | 12.50 |" in card
    assert "| Visual grounding | Flickr30k Entities | test | grounding/r1 | 48.75 |" in card
    assert "i2t_medr" not in card and "num_images" not in card
    assert _metrics_of(_front_matter(card))[("Flickr30k Entities", "test", "grounding/r1")] == 48.75

    results = tmp_path / "results.json"
    results.write_text(json.dumps(EVALUATE_OUTPUT))
    records = card_data_from_records(multitask_run, [results])
    rows = {(row["metric"], row["source"]): row for row in records["results"]}
    assert rows[("retrieval/t2i_r1", "hvl evaluate, paper protocol")]["dataset"] == "COCO Captions (Karpathy splits)"
    assert rows[("grounding/r1", "trainer, update 1360")]["value"] == 47.24


def test_hvl_card_prints_and_writes(single_vqa, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({**EVALUATE_OUTPUT, "splits": {"vqa": "test-dev"}, "metrics": {"vqa/overall": 63.0}}))
    assert main(["card", str(single_vqa), "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    assert "| Visual question answering | VQA 2.0 | test-dev | vqa/overall | 63.00 |" in printed
    assert "| Visual question answering | VQA 2.0 | val | vqa/overall | 61.50 |" in printed
    assert _metrics_of(_front_matter(printed))[("VQA 2.0", "test-dev", "vqa/overall")] == 63.0

    output = tmp_path / "README.md"
    assert main(["card", str(single_vqa), "--output", str(output), "--repo-id", "user/vqa"]) == 0
    assert 'model="user/vqa"' in output.read_text() and f"wrote {output}" in capsys.readouterr().out


def test_hvl_card_names_bad_inputs(single_vqa, tmp_path, capsys):
    assert main(["card", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"vqa": 1}))
    assert main(["card", str(single_vqa), "--results", str(bad)]) == 1
    assert f"{bad}: not the output of hvl evaluate --output" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert main(["card", str(single_vqa), "--results", str(broken)]) == 1
    assert f"{broken}: not a JSON file" in capsys.readouterr().err


def test_save_for_hub_of_a_run_folder_uses_its_records(single_vqa, processor, tmp_path):
    processor.save_pretrained(single_vqa)
    save_for_hub(single_vqa, None, tmp_path / "hub", card_data={"license": "mit"})
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "Single-task training" in card and "| vqa/overall | 61.50 |" in card
    assert _front_matter(card)["license"] == "mit"
