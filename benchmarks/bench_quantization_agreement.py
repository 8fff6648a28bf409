"""What int8 and bf16 inference cost in accuracy: top-1 agreement with fp32 and the metrics, on a trained model.

For each precision of `optimize_for_inference` (fp32 is the reference, computed in the same run on the same model
and splits), on the demo corpus's evaluation splits:

* VQA (``--vqa-split``, default val): the predicted answer of each question (`evaluate_vqa`'s submission) and the
  share of questions whose answer equals fp32's; VQA accuracy;
* retrieval (``--split``, default test): the exact images x captions score matrix (`RetrievalScorer.score_matrix`),
  the share of images whose best caption (i2t) and of captions whose best image (t2i) equal fp32's; R@1/5/10;
* grounding (``--split``): each grounded phrase's best region and the share equal to fp32's; R@1/5/10
  (`evaluate_grounding`).

    python benchmarks/bench_quantization_agreement.py      # demo_output/multitask on demo_output/corpus, ~1 min
    python benchmarks/bench_quantization_agreement.py --model M --data-dir D --threads 2 --json agreement.json
    python benchmarks/bench_quantization_agreement.py --smoke   # tiny random model on a generated corpus: seconds

The demo model comes from ``hvl demo`` (``demo_output/multitask``, trained on ``demo_output/corpus``). The corpus
is only read: converted features go to a temporary folder (or ``--features-store``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hierarchical_vl import optimize_for_inference
from hierarchical_vl.atomic_files import write_text_atomic
from hierarchical_vl.evaluation import (
    CorpusLayout,
    RetrievalScorer,
    evaluate_grounding,
    evaluate_vqa,
    load_evaluation_data,
    retrieval_inputs,
)
from hierarchical_vl.metrics import retrieval_recall
from hierarchical_vl.tasks import task_spec

PRECISIONS = ("fp32", "int8", "bf16")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("demo_output/multitask"), help="save_pretrained directory")
    parser.add_argument("--data-dir", type=Path, default=Path("demo_output/corpus"), help="corpus directory")
    parser.add_argument("--split", default="test", help="retrieval and grounding split (default test)")
    parser.add_argument("--vqa-split", default="val", help="VQA split (default val)")
    parser.add_argument("--features-store", default=None, help="where converted features go (default: a temp dir)")
    parser.add_argument("--batch-size", type=int, default=128, help="examples (pairs for retrieval) per pass")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny random model on a generated corpus (seconds)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures here as JSON")
    return parser.parse_args(argv)


def _vqa_answers(model: torch.nn.Module, dataset, batch_size: int, workdir: Path) -> tuple[dict, dict[int, str]]:
    path = workdir / f"vqa-{getattr(model, 'inference_precision', 'fp32')}.json"
    metrics = evaluate_vqa(model, dataset, batch_size=batch_size, submission_path=path)
    answers = {int(record["question_id"]): record["answer"] for record in json.loads(path.read_text("utf-8"))}
    return metrics, answers


def _retrieval_matrix(model: torch.nn.Module, dataset, batch_size: int) -> tuple[dict, np.ndarray]:
    text, images, caption_image = retrieval_inputs(dataset, model.config.max_regions)
    scores = RetrievalScorer(model, batch_size=batch_size).score_matrix(text, images, progress=False)  # (I, C)
    recall = retrieval_recall(scores, caption_image)
    return {f"retrieval/{name}": value for name, value in recall.items()}, scores


def _grounding_best_regions(model: torch.nn.Module, dataset, batch_size: int) -> tuple[dict, list[int]]:
    """`evaluate_grounding`'s metrics and each evaluated phrase's best region, in the order it visits them."""
    metrics = evaluate_grounding(model, dataset, batch_size=batch_size)
    spec = task_spec("grounding")
    collator = spec.make_collator(dataset, model.config, max_regions=model.config.max_regions)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    best = []
    with model.inference():
        for batch in loader:
            inputs = {name: batch[name] for name in spec.input_names if name in batch}
            logits = model.forward_task("grounding", **inputs).logits.float()  # (B, H, T)
            metadata = batch["metadata"]
            for row, boxes in enumerate(metadata["region_boxes"]):
                for phrase in range(len(metadata["gt_boxes"][row])):
                    best.append(int(logits[row, phrase, : len(boxes)].argmax()))
    return metrics, best


def _percent(same: np.ndarray) -> float:
    return 100.0 * float(np.mean(same)) if len(same) else float("nan")


def _smoke_corpus(workdir: Path) -> tuple[torch.nn.Module, Any, CorpusLayout, str]:
    """A tiny random multi-task model, its tokenizer and a generated 30-image corpus with 20-d features."""
    from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForMultiTask, HierarchicalVLTokenizer
    from hierarchical_vl.data import build_vqa_answer_vocab, generate_demo_corpus, iter_json_array

    paths = generate_demo_corpus(
        workdir / "corpus", num_images=30, feature_dim=20, min_regions=4, max_regions=12, questions_per_image=3
    )
    texts = [q["question"] for file in paths.vqa_questions.values() for q in iter_json_array(file, "questions")]
    texts += [s["raw"] for image in iter_json_array(paths.karpathy_captions, "images") for s in image["sentences"]]
    tokenizer = HierarchicalVLTokenizer.from_texts(texts)
    answers = build_vqa_answer_vocab(paths.vqa_annotations["train2014"], min_count=1)
    config = HierarchicalVLConfig.from_preset(
        "tiny", vocab_size=len(tokenizer), region_feature_dim=20, id2label=dict(enumerate(answers))
    )
    torch.manual_seed(0)
    model = HierarchicalVLForMultiTask(config).eval()
    return model, tokenizer, CorpusLayout(root=paths.root), "tiny random model, generated corpus"


def main(argv: list[str] | None = None) -> dict:
    args = _parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        if args.smoke:
            model, tokenizer, layout, source = _smoke_corpus(workdir)
        else:
            from hierarchical_vl.loading import load_checkpoint, load_processor

            model = load_checkpoint(args.model).eval()
            tokenizer = load_processor(args.model, model.config).tokenizer
            layout = CorpusLayout(root=args.data_dir)
            source = f"{args.model} on {args.data_dir}"
        data = load_evaluation_data(
            layout,
            ["vqa", "retrieval", "grounding"],
            args.split,
            tokenizer,
            config=model.config,
            splits={"vqa": args.vqa_split},
            store_path=args.features_store or workdir / "store",
            progress=False,
        )
        results = {}
        for precision in PRECISIONS:
            optimized = optimize_for_inference(model, precision)
            results[precision] = {
                "vqa": _vqa_answers(optimized, data.vqa, args.batch_size, workdir),
                "retrieval": _retrieval_matrix(optimized, data.retrieval, 4 * args.batch_size),
                "grounding": _grounding_best_regions(optimized, data.grounding, args.batch_size),
            }
    reference = results["fp32"]
    figures = {"source": source, "torch_threads": torch.get_num_threads(), "precisions": {}}
    for precision, result in results.items():
        answers, reference_answers = result["vqa"][1], reference["vqa"][1]
        scores, reference_scores = result["retrieval"][1], reference["retrieval"][1]
        regions, reference_regions = np.array(result["grounding"][1]), np.array(reference["grounding"][1])
        figures["precisions"][precision] = {
            "vqa_top1_agreement": _percent(np.array([answers[q] == reference_answers[q] for q in reference_answers])),
            "i2t_top1_agreement": _percent(scores.argmax(1) == reference_scores.argmax(1)),
            "t2i_top1_agreement": _percent(scores.argmax(0) == reference_scores.argmax(0)),
            "grounding_top1_agreement": _percent(regions == reference_regions),
            "vqa_questions": len(reference_answers),
            "retrieval_images_captions": list(scores.shape),
            "grounding_phrases": len(reference_regions),
            "metrics": {**result["vqa"][0], **result["retrieval"][0], **result["grounding"][0]},
        }
    print(f"{source}: torch {torch.__version__}, {figures['torch_threads']} threads")
    first = figures["precisions"]["fp32"]
    print(
        f"{first['vqa_questions']} VQA {args.vqa_split} questions; retrieval {args.split}: "
        f"{first['retrieval_images_captions'][0]} images x {first['retrieval_images_captions'][1]} captions; "
        f"grounding {args.split}: {first['grounding_phrases']} phrases"
    )
    print(
        f"{'precision':<9} {'VQA top-1':>9} {'i2t top-1':>9} {'t2i top-1':>9} {'VG top-1':>8} | {'VQA acc':>7} "
        f"{'i2t R@1':>7} {'t2i R@1':>7} {'VG R@1':>6}"
    )
    for precision, values in figures["precisions"].items():
        metrics = values["metrics"]
        print(
            f"{precision:<9} {values['vqa_top1_agreement']:>9.2f} {values['i2t_top1_agreement']:>9.2f} "
            f"{values['t2i_top1_agreement']:>9.2f} {values['grounding_top1_agreement']:>8.2f} | "
            f"{metrics.get('vqa/overall', float('nan')):>7.2f} {metrics['retrieval/i2t_r1']:>7.2f} "
            f"{metrics['retrieval/t2i_r1']:>7.2f} {metrics['grounding/r1']:>6.2f}"
        )
    print("agreement: percent of items whose top-1 equals fp32's; metrics in percent")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
