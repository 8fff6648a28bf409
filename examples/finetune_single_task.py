"""Fine-tune one task from a multi-task checkpoint.

The checkpoint's encoder and the task's decoder are loaded (any head loads out of a multi-task checkpoint), the
checkpoint's tokenizer is reused so word ids stay the same, and the task is trained alone with the package's
trainer (Adam, step decay, checkpoints, resumption), then evaluated and saved as a `from_pretrained` directory.

    python examples/finetune_single_task.py --checkpoint demo_output/multitask --task vqa \
        --data-root demo_output/corpus --iterations 200 --output-dir outputs/vqa_finetuned
"""

from __future__ import annotations

import argparse
import json

from hierarchical_vl import HierarchicalVLProcessor
from hierarchical_vl.tasks import TASK_SPECS
from hierarchical_vl.training.arguments import StageArguments, TaskArguments, load_training_arguments
from hierarchical_vl.training.run import prepare_data, train_from_arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="multi-task (or single-task) from_pretrained directory")
    parser.add_argument("--task", required=True, choices=list(TASK_SPECS))
    parser.add_argument("--data-root", required=True, help="corpus in the demo layout (see data.* overrides)")
    parser.add_argument("--config", default="demo", help="training preset or YAML for data and optimiser settings")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4, help="a lower rate than from scratch suits fine-tuning")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training argument overrides")
    args = parser.parse_args(argv)

    training = load_training_arguments(args.config, [f"data.root={args.data_root}", *args.overrides])
    training.output_dir = args.output_dir
    training.init_from = args.checkpoint
    training.optimizer.lr = args.lr
    training.tasks = {args.task: TaskArguments(args.iterations, max(1, args.iterations // 2), args.batch_size)}
    training.curriculum = [
        StageArguments(tasks=[args.task], cycle_length=min(50, args.iterations), name=f"finetune-{args.task}")
    ]
    training.validate()
    tokenizer = HierarchicalVLProcessor.from_pretrained(args.checkpoint).tokenizer
    prepared = prepare_data(training, tokenizer=tokenizer)
    result = train_from_arguments(training, prepared)
    scores = {k: v for k, v in result.evaluations[-1].items() if k not in ("update", "stage")}
    print(
        json.dumps(
            {"task": args.task, "updates": result.updates, "scores": scores, "output_dir": args.output_dir},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
