"""Multi-task training with the paper's curriculum and periodic task switching (Algorithm 1).

Any training preset (`demo`, `paper_run1`, `paper_run2`, `single_*`) or YAML file, with dotted overrides. With
`accelerate launch` it runs on several processes or GPUs unchanged:

    python examples/train_multitask.py demo data.root=demo_output/corpus output_dir=outputs/multitask
    accelerate launch --multi_gpu --num_processes 2 examples/train_multitask.py paper_run1 data.root=/data
"""

from __future__ import annotations

import argparse
import json

from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.run import train_from_arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training preset name or YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    training = load_training_arguments(args.config, args.overrides)
    print("curriculum: " + " -> ".join("+".join(stage.tasks) for stage in training.curriculum))
    result = train_from_arguments(training)
    print(
        json.dumps(
            {
                "updates": result.updates,
                "stages": result.stage_updates,
                "evaluations": result.evaluations,
                "data_wait_seconds": round(result.data_wait_seconds, 2),
                "output_dir": training.output_dir,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
