"""Data-parallel training on an existing engine: torch.distributed (started by ``accelerate launch`` or
``torchrun``), the editor's parameters wrapped in ``DistributedDataParallel``.

Nothing here launches processes or shards models: ``accelerate launch`` / ``torchrun`` start N copies of
``jola-lens train``, each with the whole frozen base; :class:`~jola_lens.train.Trainer` sees the process
group and

- gives each rank its share of every global batch (``idx[rank::world]``) and scales its answer-token
  loss by the GLOBAL token count, so the averaged gradient is the gradient of one process's batch;
- wraps the edit parameters (not the frozen base) in ``DistributedDataParallel``, which all-reduces their
  gradients during the backward pass;
- draws the Hard-Concrete gate samples from the same seeded generator state on every rank (all ranks
  seed alike and consume it alike; nothing per-rank touches it), so N processes at per-rank batch B/N
  follow the trajectory of one process at batch B, to float round-off;
- reduces the validation loss over the ranks' shares of the validation set;
- writes the run folder, the gate log and checkpoints on rank 0 only; every rank resumes from them.

Example (one process: no group, nothing changes)::

    >>> from jola_lens.distributed import current
    >>> current().world, current().rank, current().is_main
    (1, 0, True)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["Dist", "RankFailure", "all_reduce_sum", "current", "init_from_env", "wrap_edit_parameters"]


class RankFailure(RuntimeError):
    """Another process of the group died or stopped answering during training."""


@dataclasses.dataclass(frozen=True)
class Dist:
    """Where this process stands in the group: ``rank`` of ``world`` (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def current() -> Dist:
    """This process's place in the initialised process group (rank 0 of 1 without one)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(),
                local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())), backend=str(dist.get_backend()))


def init_from_env(timeout_s: float = 1800.0) -> Dist:
    """Join the process group that ``accelerate launch`` / ``torchrun`` described in the environment
    (``WORLD_SIZE`` > 1, ``RANK``, ``MASTER_ADDR``...), through accelerate's ``PartialState`` (gloo on CPU,
    NCCL on GPUs); a no-op for a single process or an existing group. ``timeout_s`` bounds a collective
    that waits for a rank (rank 0 evaluates alone before and after training while the others wait)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return current()
    try:
        from accelerate import PartialState
    except ImportError as e:  # pragma: no cover - accelerate comes with the package
        raise RuntimeError("multi-process training needs accelerate (pip install accelerate)") from e
    PartialState(timeout=_dt.timedelta(seconds=timeout_s))
    return current()


class _EditParameters(nn.Module):
    """The editor's trainable tensors as one module for DDP; ``forward(fn)`` returns ``fn()`` (the loss),
    so DDP prepares its gradient all-reduce around the computation that uses them."""

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        super().__init__()
        self.params = nn.ParameterList(list(params))  # the same Parameter objects: no copy

    def forward(self, fn: Any) -> Any:
        return fn()


def wrap_edit_parameters(params: Sequence[nn.Parameter]) -> nn.Module:
    """``DistributedDataParallel`` over ``params`` only (the frozen base is never broadcast or reduced);
    call it as ``ddp(lambda: loss)``. Every parameter must get a gradient in every step (DDP says which
    did not otherwise)."""
    module = _EditParameters(params)
    device_ids = None
    if params and params[0].device.type == "cuda":
        device_ids = [params[0].device.index]
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """The element-wise sum of ``values`` over the ranks (float64); ``values`` itself without a group."""
    if not current().enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    try:
        torch.distributed.all_reduce(t)
    except RuntimeError as e:
        raise RankFailure(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    return t.tolist()


def barrier() -> None:
    if current().enabled:
        torch.distributed.barrier()
