"""Sharing the blocks of a score grid among the processes of a ``torch.distributed`` job (``accelerate launch``).

`RetrievalScorer` splits the images x captions grid into blocks. Under a process group of several processes, each
process scores only its share of the blocks and the shares are summed into the full matrix on every process:

- `BlockShare` deals blocks round-robin: the ``j``-th block of a list goes to process ``j % world_size``. The
  scorer deals the blocks that are still to be computed (those absent from the cache directory) and, separately,
  those to be read back, so a resumed run stays balanced.
- `sum_shares` adds the processes' matrices with one ``all_reduce``; each holds its own blocks and zeros elsewhere.
  The shares are disjoint, so every entry is its one owner's value plus zeros: exactly the value a single process
  computes, ``-inf`` (pairs left out of a shortlist) included.

Nothing here depends on the model; the process group is whatever the caller initialised (``hvl evaluate`` under
``accelerate launch`` initialises it with Accelerate's ``PartialState``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["BlockShare", "any_process", "broadcast_from_main", "current_share", "reduce_counts", "sum_shares"]


@dataclass(frozen=True)
class BlockShare:
    """Which blocks of a grid one process works on.

    Args:
        rank: This process's rank in the process group.
        world_size: Number of processes (1: no process group, every block is this process's).
    """

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """Several processes share the work."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that reports (rank 0)."""
        return self.rank == 0

    def deal(self, items: Sequence[Any]) -> list[Any]:
        """This process's items of ``items``: the ``j``-th goes to process ``j % world_size``."""
        return list(items[self.rank :: self.world_size])

    def owns(self, position: int) -> bool:
        """Whether the item at ``position`` of a dealt list is this process's."""
        return position % self.world_size == self.rank


def current_share(distributed: bool = False) -> BlockShare:
    """The share of this process: with ``distributed``, its rank in the default process group, else the whole grid.

    Sharing is asked for, never inferred: code that runs on the main process only (a trainer's evaluation at a stage
    end) must not wait for the other processes.

    Args:
        distributed: Share the grid among the processes of the initialised default process group (every process
            must then take part in the same calls).
    """
    if not distributed:
        return BlockShare()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise ValueError(
            "distributed scoring needs an initialised torch.distributed process group (run under accelerate launch "
            "and create accelerate's PartialState first)"
        )
    return BlockShare(torch.distributed.get_rank(), torch.distributed.get_world_size())


def _collective_device() -> torch.device:
    """Where tensors of a collective live: the CPU for gloo (and a ``cpu:gloo`` part), else this process's GPU."""
    backend = str(torch.distributed.get_backend())
    if "gloo" in backend or backend == "mpi":
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def sum_shares(matrix: np.ndarray, share: BlockShare) -> np.ndarray:
    """The sum over processes of ``matrix`` (each holding its own blocks, zeros elsewhere), on every process.

    Args:
        matrix: `(I, C)` float32, this process's blocks filled in and 0 everywhere else.
        share: This process's share; with one process ``matrix`` is returned as it is.
    """
    if not share.distributed:
        return matrix
    device = _collective_device()
    tensor = torch.from_numpy(np.ascontiguousarray(matrix)).to(device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor.cpu().numpy()


def reduce_counts(values: Sequence[float], share: BlockShare, op: str = "sum") -> list[float]:
    """``values`` summed (``op="sum"``) or maximised (``op="max"``) over the processes, element-wise."""
    if not share.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    reduce_op = torch.distributed.ReduceOp.SUM if op == "sum" else torch.distributed.ReduceOp.MAX
    torch.distributed.all_reduce(tensor, op=reduce_op)
    return tensor.cpu().tolist()


def any_process(flag: bool, share: BlockShare) -> bool:
    """Whether ``flag`` holds on at least one process (every process must call it)."""
    return bool(reduce_counts([float(flag)], share, "max")[0])


def broadcast_from_main(value: Any, share: BlockShare) -> Any:
    """Rank 0's ``value`` (a small picklable object made by the package itself), on every process."""
    if not share.distributed:
        return value
    box = [value if share.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
