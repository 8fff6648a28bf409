"""``hvl demo``: the package's main job on data it generates itself.

``hvl demo --model-only`` builds the paper-size model, runs every head on generated inputs, saves and reloads it
and prints a report. Without ``--model-only`` the demo also generates the demo corpus, trains the three tasks
with the paper's curriculum, evaluates single-task against multi-task training and answers one query per task.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from .configuration_hierarchical_vl import HierarchicalVLConfig
from .modeling_hierarchical_vl import HierarchicalVLForMultiTask

__all__ = ["add_commands", "model_report"]


def _count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def model_report(preset: str = "paper", batch_size: int = 2, seed: int = 0) -> list[str]:
    """Build a preset's multi-task model, run every head, save and reload it; return the report lines."""
    torch.manual_seed(seed)
    config = HierarchicalVLConfig.from_preset(preset)
    start = time.perf_counter()
    model = HierarchicalVLForMultiTask(config).eval()
    lines = [f"model preset '{preset}': d={config.hidden_size}, {config.num_layers} co-attention layers, "
             f"{config.num_attention_heads} heads, task layers {config.task_layers} "
             f"(built in {time.perf_counter() - start:.1f}s)"]
    encoder = model.hierarchical_vl
    components = {
        "word embeddings (frozen)" if config.freeze_word_embeddings else "word embeddings": encoder.text_embeddings.word_embeddings,
        "BiLSTM + projection": [encoder.text_embeddings.lstm, encoder.text_embeddings.projection],
        "image encoder": encoder.image_embeddings,
        **{f"co-attention layer {i + 1}": layer for i, layer in enumerate(encoder.encoder.layers)},
        **{f"{task} decoder": getattr(model, f"{task}_decoder") for task in model.tasks},
    }
    lines.append("parameters per component:")
    for name, parts in components.items():
        parts = parts if isinstance(parts, list) else [parts]
        lines.append(f"  {name:<28} {sum(_count(p) for p in parts):>12,}")
    lines.append(f"  {'total':<28} {_count(model):>12,}  (trainable {sum(p.numel() for p in model.parameters() if p.requires_grad):,})")

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
            out = model(task, **inputs, **extra)
            outputs[task] = out.logits
            lines.append(f"  {task:<10} layer {config.task_layers[task]}  logits {tuple(out.logits.shape)}")
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        size = sum(f.stat().st_size for f in Path(directory).iterdir())
        reloaded = HierarchicalVLForMultiTask.from_pretrained(directory).eval()
        with torch.no_grad():
            difference = max(
                (reloaded(task, **inputs, **({"phrase_spans": spans} if task == "grounding" else {})).logits
                 - outputs[task]).abs().max().item()
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


def _run(args: argparse.Namespace) -> int:
    for line in model_report(args.preset):
        print(line)
    if args.model_only:
        return 0
    from .training.demo_run import run_demo  # training code is imported only here

    torch.set_num_threads(args.threads)
    return run_demo(output_dir=args.output_dir, seed=args.seed, num_images=args.images)


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the end-to-end demo on a generated corpus")
    parser.add_argument("--output-dir", default="demo_output", help="where the corpus, checkpoints and report go")
    parser.add_argument("--preset", default="paper", help="model preset of the model report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=None, help="images in the demo corpus (default: the demo's)")
    parser.add_argument("--model-only", action="store_true", help="only build, run, save and reload the model")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads for training (the demo model is small: one thread is as fast and immune to "
        "other load on the machine)",
    )
    parser.set_defaults(func=_run)
