"""The end-to-end demo: corpus, single-task and multi-task training, a Table-1-style comparison, predictions."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..data import generate_demo_corpus
from ..modeling_hierarchical_vl import HierarchicalVLForMultiTask
from ..pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor
from .arguments import StageArguments, TrainingArguments, load_training_arguments
from .run import build_model, make_evaluate_fn, prepare_data, train_from_arguments
from .schedule import TaskSwitchingSchedule, TaskTiming

__all__ = ["format_comparison_table", "run_demo"]

_ROWS = [
    ("VQA accuracy", "vqa/overall"),
    ("  yes/no", "vqa/yes/no"),
    ("  number", "vqa/number"),
    ("  other", "vqa/other"),
    ("ICR image annotation R@1", "retrieval/i2t_r1"),
    ("ICR image retrieval R@1", "retrieval/t2i_r1"),
    ("ICR rsum", "retrieval/rsum"),
    ("VG R@1", "grounding/r1"),
    ("VG R@5", "grounding/r5"),
]


def format_comparison_table(columns: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per metric, one column per model."""
    names = list(columns)
    width = max(len(label) for label, _ in _ROWS) + 2
    lines = [" " * width + "".join(f"{name:>14}" for name in names)]
    for label, key in _ROWS:
        cells = "".join(f"{columns[n][key]:>14.2f}" if key in columns[n] else f"{'-':>14}" for n in names)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def _single_task_arguments(base: TrainingArguments, task: str, output_dir: Path) -> TrainingArguments:
    args = copy.deepcopy(base)
    args.output_dir = str(output_dir)
    args.tasks = {task: base.tasks[task]}
    args.curriculum = [StageArguments(tasks=[task], cycle_length=base.curriculum[0].cycle_length, name=f"single-{task}")]
    args.validate()
    return args


def _updates_per_task(args: TrainingArguments) -> dict[str, int]:
    """How many updates each task gets over all stages of a run (Algorithm 1's sequences)."""
    counts: dict[str, int] = {}
    for stage in args.curriculum:
        timings = [TaskTiming(t, args.tasks[t].iterations, args.tasks[t].lr_step, args.tasks[t].batch_size) for t in stage.tasks]
        for task in TaskSwitchingSchedule(timings, stage.cycle_length).sequence():
            counts[task] = counts.get(task, 0) + 1
    return counts


def _write_json(path: Path, payload: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2))
    os.replace(temporary, path)


def _queries(checkpoint: Path, prepared) -> list[str]:
    """Answer one query per task with the saved multi-task checkpoint, through the predict helpers."""
    store = prepared.store
    lines = []
    vqa_data = prepared.eval["vqa"]
    vqa = VQAPredictor.from_pretrained(checkpoint, feature_store=store)
    question, image_id = vqa_data.texts[0], vqa_data.image_ids[0].item()
    answers = vqa.predict(question, image_id, top_k=3)
    truth = vqa_data.answer_table[vqa_data.answer_codes[0][0]]
    lines.append(f"VQA   image {image_id}: {question!r} -> " + ", ".join(f"{a['answer']} ({a['score']:.2f})" for a in answers)
                 + f"   [annotators: {truth!r}]")

    captions = prepared.eval["retrieval"]
    retrieval = RetrievalPredictor.from_pretrained(checkpoint, feature_store=store)
    image_id = captions.images[0].item()
    candidates = [captions.texts[i] for i in range(min(len(captions), 10))]
    ranked = retrieval.rank_captions(image_id, candidates, top_k=3)
    own = {captions.texts[i] for i in range(len(captions)) if captions.caption_image[i] == 0}
    lines.append(f"ICR   image {image_id}: best of {len(candidates)} captions:")
    for item in ranked:
        mark = "*" if item["caption"] in own else " "
        lines.append(f"      {mark} {item['score']:.3f}  {item['caption']}")

    entities = prepared.eval["grounding"]
    grounding = GroundingPredictor.from_pretrained(checkpoint, feature_store=store)
    sentence, image_id = entities.texts[0], entities.image_ids[0].item()
    phrases = list(entities.phrase_texts[entities.phrase_offsets[0] : entities.phrase_offsets[1]])
    grounded = grounding.predict(sentence, image_id, phrases)
    lines.append(f"VG    image {image_id}: {sentence!r}")
    for item in grounded:
        best = item["boxes"][0] if item["boxes"] else None
        where = f"region {best['region']} box {[round(v) for v in best['box']]} ({best['score']:.2f})" if best else "no box"
        lines.append(f"      {item['phrase']!r} -> {where}")
    lines.append("      (* marks the image's own captions)")
    return lines


def run_demo(output_dir: str | os.PathLike = "demo_output", seed: int = 0, num_images: int | None = None) -> int:
    """Run the whole demo into ``output_dir``; print and save the report. Returns a process exit code."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    corpus = output_dir / "corpus"
    paths = generate_demo_corpus(corpus, num_images=num_images or 300, seed=seed)
    print(f"\ndemo corpus written to {paths.root} (bottom-up TSV, VQA 2.0 JSON, Karpathy captions, Flickr30k Entities)")

    base = load_training_arguments(
        "demo", [f"output_dir={output_dir / 'multitask'}", f"data.root={corpus}", f"seed={seed}"]
    )
    prepared = prepare_data(base)
    print(
        "training examples: " + ", ".join(f"{task} {len(data)}" for task, data in prepared.train.items())
        + "; evaluation: " + ", ".join(f"{task} {len(data)}" for task, data in prepared.eval.items())
        + f"; vocabulary {len(prepared.tokenizer)} words, {len(prepared.answer_vocab)} answers"
    )
    evaluate = make_evaluate_fn(prepared, base.eval_batch_size)
    tasks = ["vqa", "retrieval", "grounding"]
    columns: dict[str, dict[str, float]] = {}

    untrained = build_model(base, prepared).eval()
    with torch.no_grad():
        columns["untrained"] = dict(evaluate(untrained, tasks))

    columns["single-task"] = {}
    for task in tasks:
        args = _single_task_arguments(base, task, output_dir / f"single_{task}")
        print(f"\n== single-task training: {task} ({_updates_per_task(args)[task]} updates)")
        result = train_from_arguments(args, prepared)
        columns["single-task"].update(result.evaluations[-1])

    print("\n== multi-task training with the curriculum: " + " -> ".join("+".join(s.tasks) for s in base.curriculum))
    result = train_from_arguments(base, prepared)
    columns["multi-task"] = dict(result.evaluations[-1])
    for column in columns.values():
        column.pop("update", None)
        column.pop("stage", None)

    table = format_comparison_table(columns)
    print("\nResults on the demo corpus's evaluation splits (in the spirit of the paper's Table 1):\n" + table)
    single_updates: dict[str, int] = {}
    for task in tasks:
        single_updates.update(_updates_per_task(_single_task_arguments(base, task, output_dir / f"single_{task}")))
    multi_updates = _updates_per_task(base)
    print(
        "updates per task: single-task " + ", ".join(f"{t} {single_updates[t]}" for t in tasks)
        + "; multi-task (all curriculum stages) " + ", ".join(f"{t} {multi_updates[t]}" for t in tasks)
    )
    checkpoint = Path(base.output_dir)
    reloaded = HierarchicalVLForMultiTask.from_pretrained(checkpoint)
    print(f"\nmulti-task checkpoint saved to {checkpoint} ({reloaded.num_parameters():,} parameters, "
          f"task layers {reloaded.config.task_layers})")
    print("\nOne query per task with the saved checkpoint:")
    queries = _queries(checkpoint, prepared)
    print("\n".join(queries))
    elapsed = time.perf_counter() - started
    _write_json(output_dir / "report.json", {"results": columns, "queries": queries, "seconds": elapsed})
    print(f"\ndemo finished in {elapsed:.0f}s; report in {output_dir / 'report.json'}")
    return 0
