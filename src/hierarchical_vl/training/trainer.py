"""Multi-task training on Accelerate: the paper's curriculum and periodic task switching (Algorithm 1).

One update trains one task: a batch of that task, the encoder run to the task's layer, its decoder, an Adam step.
Stages go from single tasks to pairs to all tasks, each warm-starting from the previous one's weights (with a
fresh Adam state and learning-rate schedule). The same loop runs on a CPU, one GPU or several processes.

Nothing waits in the loop: the next update's batch is prepared on a background thread while the current one runs
(`prefetch.BatchPrefetcher`, ``prefetch_batches``), and the losses stay on the device (`device_losses.DeviceLosses`),
read at log intervals, evaluations, checkpoints and stage ends only (at every update when callbacks are given).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed

from ..atomic_files import atomic_path, discard, disk_full, write_json_atomic
from ..evaluation.task_evaluation import QUESTION_TYPE_PREFIX
from ..loading import save_model_with_checksums
from .arguments import TrainingArguments
from .batching import TaskDataSource, make_task_batches
from .checkpointing import CheckpointManager
from .device_losses import DeviceLosses
from .negative_mining import mine_hard_negatives
from .prefetch import BatchPrefetcher, DeviceRegionFeatures
from .progress import StageProgress, progress_mode
from .schedule import TaskSwitchingSchedule, TaskTiming

__all__ = ["MultiTaskTrainer", "TrainerCallback", "TrainingResult", "UpdateState", "save_best_model"]

logger = logging.getLogger(__name__)

_EvaluateFn = Callable[[torch.nn.Module, list[str]], Mapping[str, float]]


@dataclass
class TrainingResult:
    """What a run did: updates per stage, the evaluations (scored under ``protocol``, the evaluation protocol's
    name and every field), and where the final model is; ``best`` is the record of the ``save_best`` checkpoint
    (metric, value, update, stage), ``None`` without one."""

    updates: int = 0
    stage_updates: dict[str, int] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    data_wait_seconds: float = 0.0
    train_seconds: float = 0.0
    best: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpdateState:
    """What one update did, handed to [`TrainerCallback.on_update_end`].

    Attributes:
        update: Updates done in the whole run, this one included (the number checkpoints are named after).
        stage: Name of the curriculum stage.
        task: The task this update trained.
        loss: Its loss (mean over the gradient-accumulation steps).
        learning_rate: The learning rate it used.
    """

    update: int
    stage: str
    task: str
    loss: float
    learning_rate: float


class TrainerCallback:
    """Hooks into [`MultiTaskTrainer.train`], in the manner of transformers' ``TrainerCallback``.

    Subclass it and override the events you need; callbacks run in the order given, on every process.
    ``on_update_end`` runs after the update's optimizer step and loss check, and before that update's periodic
    evaluation and checkpoint: an exception raised there ends training at exactly that update, as a kill would,
    without writing a checkpoint for it (the progress bar is closed and the trackers ended; resuming starts from
    the last checkpoint)::

        class StopAt(TrainerCallback):
            def on_update_end(self, trainer, state):
                if state.update == 13:
                    raise KeyboardInterrupt
    """

    def on_update_end(self, trainer: MultiTaskTrainer, state: UpdateState) -> None:
        """Called after every update.

        Args:
            trainer: The trainer (its ``model``, ``optimizer``, ``accelerator`` and ``state`` are live).
            state: What the update did.
        """


class MultiTaskTrainer:
    """Trains a `HierarchicalVLForMultiTask` model with Algorithm 1 over the stages of a curriculum.

    Args:
        model: The multi-task model (its ``config.task_layers`` fix each task's depth).
        args: Training arguments.
        sources: Training data per task.
        evaluate_fn: ``evaluate_fn(model, tasks) -> {"task/metric": value}``, run on the main process at stage ends
            and every ``args.eval_every`` updates; ``None`` disables evaluation.
        accelerator: An existing `Accelerator` (one is created from ``args`` otherwise).
        callbacks: [`TrainerCallback`] objects whose hooks run during training (e.g. to stop at an exact update).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: TrainingArguments,
        sources: Mapping[str, TaskDataSource],
        evaluate_fn: _EvaluateFn | None = None,
        accelerator: Accelerator | None = None,
        callbacks: Sequence[TrainerCallback] = (),
    ):
        self.args = args
        self.output_dir = Path(args.output_dir)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=args.log_with or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")
            ),
            # Each update uses one task's decoder and only part of the encoder.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        set_seed(args.seed)
        missing = sorted({task for stage in args.curriculum for task in stage.tasks} - set(sources))
        if missing:
            raise ValueError(f"the curriculum trains {missing} but no training data was given for them")
        trained = {task for stage in args.curriculum for task in stage.tasks}
        self.sources = {task: source for task, source in sources.items() if task in trained}
        self.evaluate_fn = evaluate_fn
        self.callbacks = list(callbacks)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(
            trainable,
            lr=args.optimizer.lr,
            betas=tuple(args.optimizer.betas),
            weight_decay=args.optimizer.weight_decay,
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.checkpoints = CheckpointManager(
            self.output_dir / "checkpoints", keep_last=args.keep_last, owner_pid=_main_process_pid(self.accelerator)
        )
        acc = self.accelerator
        self.batches = {
            task: make_task_batches(
                source,
                args.tasks[task].batch_size,
                args.seed,
                acc.process_index,
                acc.num_processes,
                args.num_workers,
                group_by_length=args.data.group_by_length,
            )
            for task, source in self.sources.items()
        }
        self.state: dict[str, Any] = {"stage": 0, "schedule": None, "updates": 0, "evaluations": []}

    # ----------------------------------------------------------------------------------------------------------
    def _schedule(self, stage_index: int) -> TaskSwitchingSchedule:
        stage = self.args.curriculum[stage_index]
        timings = [
            TaskTiming(
                task,
                self.args.tasks[task].iterations,
                self.args.tasks[task].lr_step,
                self.args.tasks[task].batch_size,
            )
            for task in stage.tasks
        ]
        return TaskSwitchingSchedule(
            timings,
            stage.cycle_length,
            base_lr=self.args.optimizer.lr,
            decay=self.args.optimizer.decay,
            partial_cycle=stage.partial_cycle,
        )

    def log_schedules(self) -> None:
        """Logs, before training, each stage's schedule (`TaskSwitchingSchedule.summary`), and warns with the
        numbers about iterations that whole cycles leave over and that are not run."""
        for index, stage in enumerate(self.args.curriculum):
            schedule = self._schedule(index)
            logger.info("%s", schedule.summary(stage.name))
            if schedule.not_run > 0:
                logger.warning(
                    "%s: %d iterations with cycle %d: %d updates run, %d not run; set curriculum.%d.partial_cycle=true "
                    "to run them",
                    stage.name,
                    schedule.total_iterations,
                    stage.cycle_length,
                    len(schedule),
                    schedule.not_run,
                    index,
                )

    def _trainer_state(self, schedule: TaskSwitchingSchedule | None) -> dict[str, Any]:
        return {
            **self.state,
            "schedule": schedule.state_dict() if schedule is not None else None,
            "data": {task: batches.state_dict() for task, batches in self.batches.items()},
            "protocol": self.args.evaluation_protocol().to_dict(),  # how the evaluations were scored
        }

    def save_checkpoint(self, schedule: TaskSwitchingSchedule | None) -> None:
        """Saves the whole training state as an atomic checkpoint (every process takes part)."""
        acc = self.accelerator
        step = self.state["updates"]
        temporary = self.checkpoints.temporary_path(step)
        try:
            acc.save_state(str(temporary))
            acc.wait_for_everyone()
            if acc.is_main_process:
                self.checkpoints.finalize(step, self._trainer_state(schedule))
        except OSError as error:
            full = disk_full(error, self._disk_full_message(step))
            if full is None:
                raise
            if acc.is_main_process:
                discard(temporary)
            raise full from error
        acc.wait_for_everyone()

    def _disk_full_message(self, step: int) -> str:
        previous = self.checkpoints.checkpoints()
        return f"disk full while writing {self.checkpoints.final_path(step)}; nothing was published; " + (
            f"the previous checkpoint at {previous[-1]} is intact"
            if previous
            else f"there was no previous checkpoint in {self.checkpoints.directory}"
        )

    def _check_output_dir(self) -> None:
        """Refuses to resume a run of another configuration; with ``overwrite_output_dir`` starts afresh instead.

        Runs before ``training_args.yaml`` is written, so the saved configuration of the old run is never lost to a
        refused one.

        Raises:
            ValueError: If ``output_dir`` holds a run whose saved arguments differ in a field that changes the run.
        """
        saved = self.output_dir / "training_args.yaml"
        if not saved.exists():
            return
        differences = self.args.run_differences(saved)
        if not differences:
            return
        if not self.args.overwrite_output_dir:
            raise ValueError(
                f"{self.output_dir} holds a run of another configuration, which would be resumed instead of "
                f"training this one; differences (saved -> new): {'; '.join(differences)}. Use another "
                "--output-dir, or --overwrite-output (overwrite_output_dir=true) to start afresh there "
                "(its checkpoints are removed)"
            )
        logger.warning("overwriting the run in %s (%s)", self.output_dir, "; ".join(differences))
        if self.accelerator.is_main_process:
            shutil.rmtree(self.output_dir / "checkpoints", ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> TaskSwitchingSchedule | None:
        found = self.checkpoints.latest_good()
        if found is None:
            return None
        path, state = found
        self.accelerator.load_state(str(path))
        self.checkpoints.restore_random_states(path, self.accelerator.process_index)  # an error, not an INFO line
        self.state = {key: state[key] for key in ("stage", "updates", "evaluations")}
        if state.get("best") is not None:  # checkpoints of runs with save_best
            self.state["best"] = state["best"]
        for task, data_state in state["data"].items():
            if task in self.batches:
                self.batches[task].load_state_dict(data_state)
        if self.accelerator.is_local_main_process:
            logger.info("resumed from %s (update %d, stage %d)", path, self.state["updates"], self.state["stage"] + 1)
        if state["schedule"] is None:
            return None
        schedule = self._schedule(self.state["stage"])
        schedule.load_state_dict(state["schedule"])
        return schedule

    def _save_best(self, metrics: Mapping[str, float], stage_name: str) -> None:
        """Keeps the model in ``output_dir/best`` when ``save_best``'s metric beats the best so far (main process)."""
        metric = self.args.save_best
        if metric is None:
            return
        if metric.split("/", 1)[0] not in {key.split("/", 1)[0] for key in metrics}:
            return  # this evaluation is not of the metric's task (an earlier stage of the curriculum)
        if metric not in metrics:
            logger.warning(
                "save_best: the evaluation has no metric %r (it has %s); no best checkpoint this time",
                metric,
                ", ".join(sorted(k for k in metrics if not k.startswith(QUESTION_TYPE_PREFIX))),
            )
            return
        value = float(metrics[metric])
        best = self.state.get("best")
        if best is not None and best.get("metric") == metric and not value > best["value"]:
            return
        record = {"metric": metric, "value": value, "update": self.state["updates"], "stage": stage_name}
        save_best_model(self.accelerator.unwrap_model(self.model), self.output_dir / "best", record)
        self.state["best"] = record
        logger.info("best %s so far (%.4g at update %d): saved to %s", metric, value, record["update"], "best/")

    def _evaluate(self, tasks: list[str], stage_name: str) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.evaluate_fn is not None and tasks and acc.is_main_process:
            model = acc.unwrap_model(self.model)
            model.eval()
            with torch.no_grad():
                metrics = dict(self.evaluate_fn(model, tasks))
            model.train()
            record = {"update": self.state["updates"], "stage": stage_name, **metrics}
            self.state["evaluations"].append(record)
            self._save_best(metrics, stage_name)
            acc.log({f"eval/{key}": value for key, value in metrics.items()}, step=self.state["updates"])
            logger.info(
                "[%s] update %d: %s",
                stage_name,
                self.state["updates"],
                # The per-question-type VQA accuracies stay in the record, out of the one-line summary.
                ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if not k.startswith(QUESTION_TYPE_PREFIX)),
            )
        acc.wait_for_everyone()

    def _prefetcher(self) -> BatchPrefetcher:
        """Prepares the batches ahead (``prefetch_batches``), with on-device features for the sources that ask."""
        device = self.accelerator.device
        copies: dict[int, DeviceRegionFeatures] = {}
        features = {}
        for task, source in self.sources.items():
            if source.feature_store is not None:
                store = source.feature_store
                if id(store) not in copies:
                    copies[id(store)] = DeviceRegionFeatures(store, device)
                features[task] = copies[id(store)]
        return BatchPrefetcher(self.batches, device, depth=self.args.prefetch_batches, device_features=features)

    def _coming_batches(self, stage_index: int, position: int):
        """The task of every batch still to come (``gradient_accumulation_steps`` per update), from update
        ``position`` of stage ``stage_index`` to the end of the curriculum."""
        for index in range(stage_index, len(self.args.curriculum)):
            schedule = self._schedule(index)
            for update in range(position if index == stage_index else 0, len(schedule)):
                yield from [schedule.task_at(update)] * self.args.gradient_accumulation_steps

    def _update(self, task: str, learning_rate: float) -> torch.Tensor:
        """One update of ``task``; returns its loss, a () tensor on the device (nothing is read from it here)."""
        acc = self.accelerator
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        losses = []
        for _ in range(self.args.gradient_accumulation_steps):
            start = time.perf_counter()
            batch = self.prefetcher.next(task)  # on the device, prepared during the previous step
            self._data_wait += time.perf_counter() - start
            if task == "retrieval" and self.args.data.retrieval_negative_mining == "hard":
                with acc.autocast():
                    batch = mine_hard_negatives(acc.unwrap_model(self.model), batch, self.args.data.retrieval_negatives)
            with acc.accumulate(self.model):
                with acc.autocast():
                    loss = self.model(task=task, **batch).loss
                acc.backward(loss)
                if acc.sync_gradients and self.args.optimizer.max_grad_norm is not None:
                    acc.clip_grad_norm_(self.model.parameters(), self.args.optimizer.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach().float())
        return torch.stack(losses).mean()

    # ----------------------------------------------------------------------------------------------------------
    def train(self) -> TrainingResult:
        """Runs (or resumes) the whole curriculum and saves the final model weights into ``output_dir``.

        Returns:
            What the run did (updates per stage, evaluations, final losses, timings).
        """
        acc = self.accelerator
        args = self.args
        self._check_output_dir()
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            args.save(self.output_dir / "training_args.yaml")
            self.checkpoints.remove_stale_temporaries()  # those of killed runs; never a live process's
        if args.log_with:
            acc.init_trackers("hierarchical_vl", config=_flat_config(args))
        schedule = self._resume()
        if acc.is_local_main_process:
            self.log_schedules()
        result = TrainingResult()
        self._data_wait = 0.0
        started = time.perf_counter()
        self.model.train()
        losses = DeviceLosses()  # read at log intervals, checkpoints, evaluations and stage ends only
        self.prefetcher = self._prefetcher()
        self.prefetcher.start(self._coming_batches(self.state["stage"], schedule.position if schedule else 0))
        for stage_index in range(self.state["stage"], len(args.curriculum)):
            stage = args.curriculum[stage_index]
            if schedule is None:
                schedule = self._schedule(stage_index)
                self.optimizer.optimizer.state.clear()  # warm start: the previous stage's weights, a fresh Adam
            self.state["stage"] = stage_index
            bar = StageProgress(
                stage.name,
                len(schedule),
                schedule.position,
                mode=progress_mode(args.progress, enabled=acc.is_local_main_process),
                every_seconds=args.progress_every,
            )
            while not schedule.finished:
                learning_rate = schedule.learning_rate()
                task = next(schedule)
                loss = self._update(task, learning_rate)  # () on the device
                self.state["updates"] += 1
                updates = self.state["updates"]
                losses.add(updates, task, stage.name, loss)
                bar.update(task)
                if args.log_every and updates % args.log_every == 0:
                    bar.set_losses(losses.running(), learning_rate)
                    acc.log({f"train/{task}_loss": float(loss), "train/lr": learning_rate}, step=updates)
                    losses.check()
                if self.callbacks:  # callbacks are handed the loss: read it (and check it) at every update
                    losses.check()
                    update_state = UpdateState(updates, stage.name, task, float(loss), learning_rate)
                    try:
                        for callback in self.callbacks:
                            callback.on_update_end(self, update_state)
                    except BaseException:  # a callback ends the run here, before this update's checkpoint
                        bar.close()
                        self.prefetcher.close()
                        acc.end_training()
                        raise
                if args.eval_every and updates % args.eval_every == 0 and not schedule.finished:
                    losses.check()
                    self._evaluate(_evaluated_tasks(stage), stage.name)
                if args.save_every and updates % args.save_every == 0 and not schedule.finished:
                    losses.check()
                    self.save_checkpoint(schedule)
            bar.close()
            losses.check()
            result.stage_updates[stage.name] = len(schedule)
            self._evaluate(_evaluated_tasks(stage), stage.name)
            self.state["stage"] = stage_index + 1
            schedule = None
            self.save_checkpoint(None)
        result.updates = self.state["updates"]
        result.evaluations = list(self.state["evaluations"])
        result.protocol = self.args.evaluation_protocol().to_dict()
        result.best = self.state.get("best")
        self.prefetcher.close()
        result.final_losses = losses.running()
        result.data_wait_seconds = self._data_wait
        result.train_seconds = time.perf_counter() - started
        acc.wait_for_everyone()
        if acc.is_main_process:
            try:
                save_model_with_checksums(acc.unwrap_model(self.model), self.output_dir, safe_serialization=True)
            except OSError as error:
                full = disk_full(error, model_disk_full_message(self.output_dir))
                if full is None:
                    raise
                acc.end_training()
                raise full from error
        acc.wait_for_everyone()
        acc.end_training()
        return result


def _main_process_pid(accelerator: Accelerator) -> int:
    """The main process's pid, on every process (checkpoint temporaries are named after it)."""
    if accelerator.num_processes == 1:
        return os.getpid()
    from accelerate.utils import broadcast_object_list

    return int(broadcast_object_list([os.getpid()], from_process=0)[0])


def save_best_model(model: torch.nn.Module, directory: Path, record: dict[str, Any]) -> None:
    """Replaces ``directory`` with the model's weights and configuration and ``best_metric.json`` (``record``),
    atomically: written to a temporary sibling, then published by one rename."""
    with atomic_path(directory, directory=True) as temporary:
        save_model_with_checksums(model, temporary, safe_serialization=True)
        write_json_atomic(temporary / "best_metric.json", record)


def model_disk_full_message(directory: str | os.PathLike) -> str:
    """The one line of a disk that filled up while the final model was saved into ``directory``."""
    directory = Path(directory)
    previous = (directory / "config.json").is_file()
    return f"disk full while writing {directory}; nothing was published; " + (
        f"the previous model at {directory} is intact" if previous else f"there was no previous model in {directory}"
    )


def _evaluated_tasks(stage) -> list[str]:
    return list(stage.tasks) if stage.evaluate is None else list(stage.evaluate)


def _flat_config(args: TrainingArguments) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = (
                ",".join(str(v) for v in value) if all(not isinstance(v, dict) for v in value) else str(value)
            )
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[prefix] = "none" if value is None else value

    visit("", args.to_dict())
    return flat


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
