"""Trains a configuration (``argv[1]``) and writes the (update, stage, task) of every update this process trained to
``argv[2]/rank<RANK>.json``: run under ``accelerate launch`` to compare the processes."""

import json
import os
import sys
from pathlib import Path

from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.run import train_from_arguments
from hierarchical_vl.training.trainer import TrainerCallback


class _Trace(TrainerCallback):
    def __init__(self):
        self.updates = []

    def on_update_end(self, trainer, state):
        self.updates.append([state.update, state.stage, state.task])


if __name__ == "__main__":
    trace = _Trace()
    train_from_arguments(load_training_arguments(sys.argv[1]), evaluate=False, callbacks=[trace])
    rank = os.environ.get("RANK", "0")
    Path(sys.argv[2], f"rank{rank}.json").write_text(
        json.dumps({"world": os.environ.get("WORLD_SIZE"), "updates": trace.updates})
    )
