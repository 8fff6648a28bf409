"""``hvl evaluate``: evaluate a checkpoint on a corpus split, per task, and print the paper's tables.

Under ``accelerate launch`` (several processes), the retrieval score matrix is shared among the processes (see
`RetrievalScorer`); VQA and grounding run on the main process, which alone prints and writes the outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from ..metrics.grounding import BOX_MATCHING
from ..tasks import TASK_SPECS
from .protocols import PROTOCOLS, EvaluationProtocol, caption_corpus, evaluation_protocol
from .retrieval_ranking import FIRST_STAGES
from .task_evaluation import RETRIEVAL_PROTOCOLS

__all__ = ["add_commands"]

_TASK_CHOICES = (*TASK_SPECS, "all")

_PROCESS_GROUP_TIMEOUT = timedelta(hours=24)
"""How long a process waits for the others in a collective: a process whose blocks were all in the cache waits for
those still scoring theirs."""


def _process_state() -> Any:
    """Accelerate's ``PartialState`` (it initialises the process group) when launched with several processes
    (``accelerate launch``, ``torchrun``), else ``None``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # As Accelerator does: ACCELERATE_USE_CPU (``accelerate launch --cpu``) asks for CPU processes (gloo).
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    return PartialState(cpu=cpu, timeout=_PROCESS_GROUP_TIMEOUT)


def _vqa_options(args: argparse.Namespace, data: Any, info: dict[str, Any]) -> dict[str, Any]:
    predictions = args.vqa_predictions
    if predictions is None and args.output is not None:
        predictions = args.output.with_name(f"{args.output.stem}_vqa_{data.splits['vqa']}_predictions.json")
    if predictions is None and not data.vqa.has_labels:
        predictions = Path(f"vqa_{data.splits['vqa']}_predictions.json")
    if predictions is not None:
        info["vqa_predictions"] = str(predictions)
    return {"batch_size": args.batch_size, "legacy": args.legacy_vqa, "submission_path": predictions}


def _protocol(args: argparse.Namespace) -> EvaluationProtocol:
    """The protocol of ``--protocol`` with the single-field flags applied (an old ``--protocol full|1k|both`` is
    the retrieval ranking: it becomes ``--retrieval-protocol``, with a deprecation warning)."""
    name = args.protocol
    if name in RETRIEVAL_PROTOCOLS:
        warnings.warn(
            f"hvl evaluate --protocol {name} is deprecated: --protocol now names the evaluation protocol "
            f"({', '.join(PROTOCOLS)}); use --retrieval-protocol {name}",
            FutureWarning,
            stacklevel=2,
        )
        if args.retrieval_protocol not in (None, name):
            raise ValueError(f"--protocol {name} contradicts --retrieval-protocol {args.retrieval_protocol}")
        args.retrieval_protocol, name = name, "current"
    protocol = evaluation_protocol(name)
    changes: dict[str, Any] = {}
    if args.legacy_vqa:
        changes["vqa_metric"] = "legacy"
    if args.box_matching is not None:
        changes["box_matching"] = args.box_matching
    return protocol.with_overrides(**changes)


def _retrieval_protocol(args: argparse.Namespace, layout: Any, data: Any) -> tuple[EvaluationProtocol, dict]:
    """The protocol with the ranking of the evaluated caption corpus (``--retrieval-protocol`` replaces the
    protocol's), and the retrieval options it gives."""
    corpus = caption_corpus(layout.captions_path())
    protocol = args.evaluation_protocol
    if args.retrieval_protocol is not None:
        protocol = protocol.with_overrides(**{f"{corpus}_retrieval": args.retrieval_protocol})
        return protocol, {"protocol": args.retrieval_protocol, "fold_size": protocol.retrieval_fold_size}
    options = protocol.task_options("retrieval", caption_corpus=corpus, num_images=len(data.retrieval.images))
    # A split too small for the protocol's folds is ranked whole: the recorded protocol says so.
    return protocol.with_overrides(**{f"{corpus}_retrieval": options["protocol"]}), options


def _retrieval_options(
    args: argparse.Namespace, model: Any, device: torch.device, ranking: dict[str, Any], distributed: bool
) -> dict[str, Any]:
    from .retrieval_ranking import RetrievalScorer

    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    blocks = {
        name: value
        for name, value in (("images_per_block", args.block_images), ("captions_per_block", args.block_captions))
        if value is not None
    }
    scorer = RetrievalScorer(
        model, batch_size=args.pair_batch_size, dtype=dtype, device=device, distributed=distributed, **blocks
    )
    return {
        **ranking,
        "shortlist": args.shortlist,
        "first_stage": args.first_stage,
        "shortlist_check": args.shortlist_check,
        "cache_dir": args.cache_dir,
        "scorer": scorer,
    }


def _priors(
    args: argparse.Namespace,
    layout: Any,
    data: Any,
    config: Any,
    info: dict[str, Any],
    protocol: EvaluationProtocol,
    ranking: dict[str, Any] | None,
) -> dict[str, Any]:
    """The reference rows of chance and simple priors on the evaluated splits (VQA's prior from ``--prior-splits``),
    scored under the same protocol as the model (VQA metric version, box matching, retrieval ranking)."""
    from ..data import vqa_data_files
    from .baselines import QuestionTypePrior, prior_metrics

    vqa_prior = None
    if data.vqa is not None and data.vqa.has_labels:
        splits = [split for split in args.prior_splits.split(",") if split]
        found = vqa_data_files(layout.task_path("vqa"))
        usable = [split for split in splits if split in found and found[split][1] is not None]
        if usable:
            pool = [config.id2label[i] for i in range(config.num_answers)]
            vqa_prior = QuestionTypePrior.from_corpus(layout, usable, pool)
            info["vqa_prior_splits"] = usable
        else:
            print(f"no annotated VQA split {splits} in the corpus: no VQA prior row")
    return prior_metrics(
        data.datasets,
        vqa_prior=vqa_prior,
        max_regions=args.max_regions or config.max_regions,
        legacy=protocol.legacy_vqa,
        box_matching=protocol.box_matching,
        retrieval_ranking=ranking["protocol"] if ranking else "full",
        fold_size=ranking["fold_size"] if ranking else protocol.retrieval_fold_size,
    )


def _features_argument(values: list[str] | None) -> Any:
    """``--features`` as `CorpusLayout` takes it: one path, a list, or a mapping corpus -> paths (``CORPUS=PATH``).

    Raises:
        ValueError: If some values name a corpus and others do not.
    """
    if not values:
        return "features/region_features.tsv"
    named = [value.partition("=") for value in values]
    if not any(separator for _, separator, _ in named):
        return values[0] if len(values) == 1 else list(values)
    if not all(separator for _, separator, _ in named):
        raise ValueError(f"--features: name the corpus of every source (CORPUS=PATH) or of none, got {values}")
    features: dict[str, list[str]] = {}
    for corpus, _, path in named:
        features.setdefault(corpus, []).append(path)
    return features


def _evaluate(args: argparse.Namespace) -> int:
    from ..loading import load_checkpoint as load_model
    from ..loading import load_processor
    from ..tasks import model_tasks, task_spec
    from .evaluation_data import CorpusLayout, load_evaluation_data
    from .results_table import format_results_table, write_results_json

    state = _process_state()
    main_process = state is None or state.is_main_process
    progress = not args.no_progress and main_process
    report = print if main_process else (lambda *_, **__: None)
    args.evaluation_protocol = _protocol(args)
    args.legacy_vqa = args.evaluation_protocol.legacy_vqa
    model = load_model(args.checkpoint, task=None if args.task == "all" else args.task)
    tokenizer = load_processor(args.checkpoint, model.config).tokenizer
    if args.device is None and state is not None:
        device = state.device
    else:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    layout = CorpusLayout(
        root=args.data_dir,
        features=_features_argument(args.features),
        vqa_dir=args.vqa_dir or "vqa",
        captions_file=args.captions_file,
        entities_dir=args.entities_dir or "flickr30k_entities",
    )
    if args.task == "all":
        tasks = [task for task in model_tasks(model) if layout.has_data(task)]
        if not tasks:
            raise ValueError(f"{args.data_dir} has data for none of the model's tasks {model_tasks(model)}")
    else:
        tasks = [args.task]
        if args.task not in model_tasks(model):
            raise ValueError(f"the checkpoint has no {args.task} decoder (it has {model_tasks(model)})")
    if state is not None:
        # Only the retrieval ranking is shared among the processes: the others take part in it and stop; the main
        # process evaluates the other tasks after it.
        if not main_process and "retrieval" not in tasks:
            return 0
        tasks = ["retrieval"] if not main_process else sorted(tasks, key=lambda task: task != "retrieval")
    config = model.config
    start = time.perf_counter()
    # The main process converts the features first (if they need it); the others then open its store.
    with contextlib.nullcontext() if state is None else state.main_process_first():
        data = load_evaluation_data(
            layout,
            tasks,
            args.split,
            tokenizer,
            config=config,
            splits={"vqa": args.vqa_split} if args.vqa_split else None,
            store_path=args.features_store,
            progress=progress,
        )
    report(
        f"loaded {', '.join(f'{t} ({data.splits[t]}, {len(data.for_task(t))} examples)' for t in tasks)} "
        f"in {time.perf_counter() - start:.1f}s"
    )

    metrics: dict[str, Any] = {}
    info: dict[str, Any] = {}
    protocol = args.evaluation_protocol
    ranking = None
    if "retrieval" in tasks:
        protocol, ranking = _retrieval_protocol(args, layout, data)
        info["retrieval_protocol"] = ranking["protocol"]
    report(f"evaluation protocol: {protocol.name}")
    for task in tasks:
        # The command's own flags per task; everything else is the task's evaluation function.
        if task == "vqa":
            options = _vqa_options(args, data, info)
        elif task == "retrieval":
            options = _retrieval_options(args, model, device, ranking, distributed=state is not None)
        else:
            options = {"batch_size": args.batch_size, "box_matching": protocol.box_matching}
        start = time.perf_counter()
        metrics.update(
            task_spec(task).evaluate_fn(
                model,
                data.for_task(task),
                device=device,
                max_regions=args.max_regions or config.max_regions,
                progress=progress,
                **options,
            )
        )
        if task == "vqa" and "vqa_predictions" in info:
            report(f"VQA predictions (official submission format): {info['vqa_predictions']}")
        if task == "retrieval":
            if args.shortlist is not None:
                info["retrieval_first_stage"] = args.first_stage
            info["retrieval_seconds"] = round(time.perf_counter() - start, 2)
            info["retrieval_last_matrix"] = options["scorer"].stats_dict()
    if not main_process:
        return 0

    priors = {} if args.no_priors else _priors(args, layout, data, config, info, protocol, ranking)
    print()
    print(format_results_table(metrics, data.splits, priors))
    if args.output is not None:
        write_results_json(
            args.output,
            {
                "checkpoint": str(args.checkpoint),
                "data_dir": str(args.data_dir),
                "splits": data.splits,
                "protocol": protocol.to_dict(),
                "legacy_vqa": protocol.legacy_vqa,
                "metrics": metrics,
                "priors": priors,
                "info": info,
            },
        )
        print(f"\nwrote {args.output}")
    print(_evaluation_summary(args.checkpoint, metrics, data.splits, args.output))
    return 0


def _evaluation_summary(checkpoint: Any, metrics: dict[str, Any], splits: dict[str, str], output: Any) -> str:
    """The line ``hvl evaluate`` ends with: the model, the splits, the headline metrics and where they were written.

    Args:
        checkpoint: The evaluated model directory.
        metrics: The metrics (``task/metric`` keys).
        splits: The split evaluated per task.
        output: The results JSON written, or ``None``.
    """
    from .results_table import HEADLINE_METRICS

    headline = ", ".join(f"{key} {metrics[key]:.2f}" for key in HEADLINE_METRICS if key in metrics)
    evaluated = ", ".join(f"{task} {split}" for task, split in splits.items())
    written = f"; results in {output}" if output is not None else " (--output FILE.json keeps them)"
    return f"evaluated {checkpoint} on {evaluated}: {headline or 'no headline metric'}{written}"


def _run(args: argparse.Namespace) -> int:
    from ..progress_bars import progress_bars_disabled

    try:
        with progress_bars_disabled(args.no_progress):
            return _evaluate(args)
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"hvl evaluate: error: {error}", file=sys.stderr)
        return 1


def add_commands(subparsers: Any) -> None:
    """Register ``hvl evaluate`` on the top-level sub-parsers of the ``hvl`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a corpus split (VQA accuracy, retrieval and grounding Recall@K)",
        description=(
            "Evaluate a saved model (multi-task or one head) on a split of a corpus laid out like the demo corpus "
            "(features/, vqa/, captions/, flickr30k_entities/): VQA accuracy per answer type (official evaluation), "
            "image annotation and image retrieval Recall@K from the exact images x captions score matrix, and phrase "
            "grounding Recall@K. Prints the paper's tables and optionally writes JSON."
        ),
    )
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="save_pretrained directory")
    parser.add_argument(
        "--task",
        choices=_TASK_CHOICES,
        default="all",
        help="task to evaluate; all = every task of the model the corpus has data for",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="corpus directory")
    parser.add_argument("--split", default="val", help="split of every task: val or test (default: val)")
    parser.add_argument("--vqa-split", default=None, help="VQA split overriding --split (val, test, test-dev)")
    parser.add_argument("--output", type=Path, default=None, help="write the results to this JSON file")
    parser.add_argument(
        "--vqa-predictions",
        type=Path,
        default=None,
        help="VQA predictions file in the official submission format (default: next to --output)",
    )
    parser.add_argument(
        "--protocol",
        choices=(*PROTOCOLS, *RETRIEVAL_PROTOCOLS),
        default="current",
        help="evaluation protocol: current (the package's defaults) or paper (legacy VQA code, merged grounding "
        "boxes, COCO 1K and 5K, Flickr30k 1K test); full|1k|both are deprecated spellings of --retrieval-protocol",
    )
    parser.add_argument(
        "--legacy-vqa",
        action="store_true",
        help="score VQA with the official code as it was before its 2021 fix (papers of 2015-2020), whatever the "
        "protocol",
    )
    parser.add_argument(
        "--box-matching",
        choices=BOX_MATCHING,
        default=None,
        help="grounding: a phrase with several boxes is matched by any box or by their merged box (default: the "
        "protocol's)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="questions / sentences per forward pass")
    parser.add_argument("--pair-batch-size", type=int, default=512, help="image-caption pairs per forward pass")
    parser.add_argument(
        "--retrieval-protocol",
        choices=RETRIEVAL_PROTOCOLS,
        default=None,
        help="retrieval: full = one ranking over the split (COCO 5K, Flickr30k 1K); 1k = mean over "
        "folds of 1000 images (COCO 1K); both (default: the protocol's for the corpus)",
    )
    parser.add_argument(
        "--shortlist",
        type=int,
        default=None,
        metavar="K",
        help="two-stage retrieval: exact scores only for each query's top-K of a cheap first stage",
    )
    parser.add_argument(
        "--first-stage",
        choices=FIRST_STAGES,
        default="dual-encoder",
        help="the shortlist's cheap scores: dual-encoder (one matrix product over all pairs) or "
        "first-layer (the first co-attention layer per pair: slower, much closer shortlists)",
    )
    parser.add_argument(
        "--shortlist-check",
        action="store_true",
        help="with --shortlist, also compute the exact ranking and report how often they agree",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="save finished retrieval score blocks here; a rerun resumes from them (with one process or several)",
    )
    parser.add_argument(
        "--block-images",
        type=int,
        default=None,
        help="images per block of the retrieval score grid, the unit of the cache and of the share of each process "
        "under accelerate launch (default 64)",
    )
    parser.add_argument(
        "--block-captions",
        type=int,
        default=None,
        help="captions per block of the retrieval score grid (default 1024)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="precision of the retrieval pair scoring (bf16 autocast is meant for GPUs)",
    )
    parser.add_argument("--max-regions", type=int, default=None, help="regions per image (default: the model's)")
    parser.add_argument(
        "--features",
        action="append",
        default=None,
        metavar="[CORPUS=]PATH",
        help="region features under DIR (default features/region_features.tsv; a store directory "
        "is used as is, other formats are converted once); repeat for several sources, and name each one's corpus "
        "(--features coco=bottom_up/trainval --features flickr30k=bottom_up/flickr30k) to convert them into one "
        "store keyed by corpus, where each task reads the images of its own corpus; hf://datasets/ORG/NAME or "
        "parquet:PATH streams a Hub dataset or a Parquet export instead, keeping the split's images in memory",
    )
    parser.add_argument("--features-store", default=None, help="where converted region features go")
    parser.add_argument("--vqa-dir", default=None, help="VQA 2.0 directory under DIR (default vqa)")
    parser.add_argument(
        "--captions-file",
        default=None,
        help="Karpathy split file under DIR (default captions/dataset_coco.json or dataset_flickr30k.json)",
    )
    parser.add_argument("--entities-dir", default=None, help="Flickr30k Entities directory under DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars at all (transformers' included)")
    parser.add_argument(
        "--prior-splits",
        default="train",
        help="VQA splits (comma-separated) whose annotations give the 'most frequent answer per question type' "
        "prior row (default: train)",
    )
    parser.add_argument(
        "--no-priors",
        action="store_true",
        help="leave out the reference rows (chance, most frequent answer per question type, largest / first box)",
    )
    parser.set_defaults(func=_run)
