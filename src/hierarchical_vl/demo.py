"""``hvl demo``: the package's main job on data it generates itself, in one place.

``hvl demo --model-only`` builds the paper-size model, runs every head on generated inputs, saves and reloads it
and prints a report ([`model_report`]). Without ``--model-only`` the demo also generates the demo corpus, trains
every task combination of the paper's Table 1 on it with the paper's curriculum, plus each task alone matched to
the updates it got with all tasks, prints the table with reference rows for chance and simple priors
(``hvl experiment table1``) and answers one query per task with the saved checkpoint ([`run_demo`]).

This is a command module: only the CLI imports it. Training, evaluation and the pipelines are imported inside the
functions that need them, so building the model report needs neither.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .atomic_files import write_text_atomic
from .configuration_hierarchical_vl import HierarchicalVLConfig
from .modeling_hierarchical_vl import HierarchicalVLForMultiTask

if TYPE_CHECKING:
    from .training.run import PreparedData

__all__ = ["DEMO_IMAGES", "add_commands", "model_report", "run_demo"]

DEMO_IMAGES = 300
"""Images in the demo corpus by default."""


def _count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def model_report(preset: str = "paper", batch_size: int = 2, seed: int = 0) -> list[str]:
    """Builds a preset's multi-task model, runs every head on generated inputs, saves and reloads it.

    Args:
        preset: Model preset (``paper``, ``demo``, ``tiny``).
        batch_size: Examples of the generated inputs.
        seed: Seed of the weights and the inputs.

    Returns:
        The report, one line per item.

    Raises:
        RuntimeError: If the reloaded model does not reproduce the saved model's outputs.
    """
    torch.manual_seed(seed)
    config = HierarchicalVLConfig.from_preset(preset)
    start = time.perf_counter()
    model = HierarchicalVLForMultiTask(config).eval()
    lines = [
        f"model preset '{preset}': d={config.hidden_size}, {config.num_layers} co-attention layers, "
        f"{config.num_attention_heads} heads, task layers {config.task_layers} "
        f"(built in {time.perf_counter() - start:.1f}s)"
    ]
    encoder = model.hierarchical_vl
    components = {
        "word embeddings (frozen)"
        if config.freeze_word_embeddings
        else "word embeddings": encoder.text_embeddings.word_embeddings,
        "BiLSTM + projection": [encoder.text_embeddings.lstm, encoder.text_embeddings.projection],
        "image encoder": encoder.image_embeddings,
        **{f"co-attention layer {i + 1}": layer for i, layer in enumerate(encoder.encoder.layers)},
        **{f"{task} decoder": getattr(model, f"{task}_decoder") for task in model.tasks},
    }
    lines.append("parameters per component:")
    for name, parts in components.items():
        parts = parts if isinstance(parts, list) else [parts]
        lines.append(f"  {name:<28} {sum(_count(p) for p in parts):>12,}")
    lines.append(
        f"  {'total':<28} {_count(model):>12,}  "
        f"(trainable {sum(p.numel() for p in model.parameters() if p.requires_grad):,})"
    )

    generator = torch.Generator().manual_seed(seed)
    n, t = config.max_question_words, 36
    inputs = {
        "input_ids": torch.randint(2, config.vocab_size, (batch_size, n), generator=generator),
        "attention_mask": torch.ones(batch_size, n, dtype=torch.long),
        "region_features": torch.randn(batch_size, t, config.region_feature_dim, generator=generator),
        "region_mask": torch.ones(batch_size, t, dtype=torch.long),
    }
    inputs["attention_mask"][1:, n - 4 :] = 0
    inputs["input_ids"] *= inputs["attention_mask"]
    inputs["region_mask"][1:, 20:] = 0
    spans = torch.tensor([[[0, 1], [3, 5]]] * batch_size)
    outputs = {}
    lines.append("outputs on generated inputs:")
    with torch.no_grad():
        for task in model.tasks:
            extra = {"phrase_spans": spans} if task == "grounding" else {}
            out = model(**inputs, **extra, task=task)
            outputs[task] = out.logits
            lines.append(f"  {task:<10} layer {config.task_layers[task]}  logits {tuple(out.logits.shape)}")
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        size = sum(f.stat().st_size for f in Path(directory).iterdir())
        reloaded = HierarchicalVLForMultiTask.from_pretrained(directory).eval()
        with torch.no_grad():
            difference = max(
                (
                    reloaded(**inputs, **({"phrase_spans": spans} if task == "grounding" else {}), task=task).logits
                    - outputs[task]
                )
                .abs()
                .max()
                .item()
                for task in model.tasks
            )
        weights_equal = all(
            torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values())
        )
    same = weights_equal and difference < 1e-5
    lines.append(
        f"save/reload ({size / 2**20:.0f} MiB safetensors): weights identical = {weights_equal}, "
        f"largest output difference {difference:.1e}"
    )
    if not same:
        raise RuntimeError("the reloaded model does not reproduce the saved model's outputs")
    return lines


def _queries(checkpoint: Path, prepared: PreparedData) -> list[str]:
    """Answers one query per task with the saved multi-task checkpoint, through the predict helpers."""
    from .pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor

    store = prepared.store
    lines = []
    vqa_data = prepared.eval["vqa"]
    vqa = VQAPredictor.from_pretrained(checkpoint, feature_store=store)
    question, image_id = vqa_data.texts[0], vqa_data.image_ids[0].item()
    answers = vqa.predict(question, image_id, top_k=3)
    truth = vqa_data.answer_table[vqa_data.answer_codes[0][0]]
    lines.append(
        f"VQA   image {image_id}: {question!r} -> "
        + ", ".join(f"{a['answer']} ({a['score']:.2f})" for a in answers)
        + f"   [annotators: {truth!r}]"
    )

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
        where = (
            f"region {best['region']} box {[round(v) for v in best['box']]} ({best['score']:.2f})" if best else "no box"
        )
        lines.append(f"      {item['phrase']!r} -> {where}")
    lines.append("      (* marks the image's own captions)")
    return lines


def run_demo(output_dir: str | os.PathLike = "demo_output", seed: int = 0, num_images: int | None = None) -> int:
    """Runs the whole demo into ``output_dir``, printing its report and saving it as ``report.json``.

    Args:
        output_dir: Where the corpus, the checkpoints and the report go.
        seed: Seed of the corpus and the training runs.
        num_images: Images in the demo corpus (the demo's default by default).

    Returns:
        The process exit code.
    """
    from .data import generate_demo_corpus
    from .training.arguments import load_training_arguments
    from .training.experiments import TABLE1_COLUMNS, format_table1, run_table1
    from .training.plots import plot_table1
    from .training.run import prepare_data

    started = time.perf_counter()
    output_dir = Path(output_dir)
    corpus = output_dir / "corpus"
    paths = generate_demo_corpus(corpus, num_images=num_images or DEMO_IMAGES, seed=seed)
    print(
        f"\ndemo corpus written to {paths.root} (bottom-up TSV, VQA 2.0 JSON, Karpathy captions, Flickr30k Entities, "
        "scene pictures)"
    )

    base = load_training_arguments("demo", [f"data.root={corpus}", f"seed={seed}"])
    prepared = prepare_data(base)
    print(
        "training examples: "
        + ", ".join(f"{task} {len(data)}" for task, data in prepared.train.items())
        + "; evaluation: "
        + ", ".join(f"{task} {len(data)}" for task, data in prepared.eval.items())
        + f"; vocabulary {len(prepared.tokenizer)} words, {len(prepared.answer_vocab)} answers"
    )
    print("curriculum of the demo configuration: " + " -> ".join("+".join(s.tasks) for s in base.curriculum))
    result = run_table1(base, [seed], output_dir / "table1", prepared=prepared)
    table = format_table1(result)
    print("\nThe paper's Table 1 on the demo corpus's evaluation splits:\n\n" + table)
    chart = plot_table1(result, TABLE1_COLUMNS, output_dir / "table1" / "table1.png")
    if chart is not None:
        print(f"\nTable 1 as a chart: {chart}")

    combinations = [row for row in result.rows if row.kind == "combination"]
    trained = Path(max(combinations, key=lambda row: len(row.tasks)).output_dirs[0])  # the all-task model
    checkpoint = output_dir / "multitask"  # where the README's commands find it
    shutil.rmtree(checkpoint, ignore_errors=True)
    shutil.copytree(trained, checkpoint, ignore=shutil.ignore_patterns("checkpoints"))
    reloaded = HierarchicalVLForMultiTask.from_pretrained(checkpoint)
    print(
        f"\nmulti-task checkpoint saved to {checkpoint} ({reloaded.num_parameters():,} parameters, "
        f"task layers {reloaded.config.task_layers})"
    )
    print("\nOne query per task with the saved checkpoint:")
    queries = _queries(checkpoint, prepared)
    print("\n".join(queries))
    elapsed = time.perf_counter() - started
    write_text_atomic(
        output_dir / "report.json",
        json.dumps({"table1": result.to_dict(), "queries": queries, "seconds": elapsed}, indent=2),
    )
    print(f"\ndemo finished in {elapsed:.0f}s; report in {output_dir / 'report.json'}")
    print(f"the demo app (pip install 'hierarchical-vl[app]'): hvl serve {checkpoint} --features {paths.features_tsv}")
    return 0


def _run(args: argparse.Namespace) -> int:
    for line in model_report(args.preset):
        print(line)
    if args.model_only:
        return 0
    torch.set_num_threads(args.threads)
    return run_demo(output_dir=args.output_dir, seed=args.seed, num_images=args.images)


def add_commands(subparsers: Any) -> None:
    """Registers ``hvl demo`` on the top-level sub-parsers of the ``hvl`` command."""
    parser = subparsers.add_parser("demo", help="run the end-to-end demo on a generated corpus")
    parser.add_argument("--output-dir", default="demo_output", help="where the corpus, checkpoints and report go")
    parser.add_argument("--preset", default="paper", help="model preset of the model report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=None, help="images in the demo corpus (default: the demo's)")
    parser.add_argument("--model-only", action="store_true", help="only build, run, save and reload the model")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for training (the demo model is small: one thread is as fast and immune to "
        "other load on the machine)",
    )
    parser.set_defaults(func=_run)
