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

__all__ = ["Dist", "RankFailure", "all_reduce_sum", "current", "fsdp_requested", "init_from_env", "is_sharded",
           "local_share", "no_grad_context", "shard_base", "wrap_edit_parameters"]


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


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP: ``accelerate launch --use_fsdp`` (or an accelerate config with an
    FSDP section) sets ``ACCELERATE_USE_FSDP=true`` in every process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in ("1", "true", "yes")


def is_sharded(model: Any) -> bool:
    """Whether :func:`shard_base` sharded ``model``: every rank must then run the same forward passes
    (training steps, validation and scoring batches) in the same order."""
    return bool(getattr(model, "fsdp_sharded", False))


def local_share(model: Any) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole model) over ``model``'s parameters: on an
    FSDP-sharded base each rank holds its shard of every layer and the whole root unit."""
    here = whole = 0
    for p in model.parameters():
        to_local = getattr(p, "to_local", None)
        here += to_local().numel() if callable(to_local) else p.numel()
        whole += p.numel()
    return here, whole


def no_grad_context(model: Any) -> Any:
    """``torch.inference_mode()`` for scoring, ``torch.no_grad()`` on an FSDP-sharded base (FSDP's gathered
    weights must stay ordinary tensors that the next training step can write into)."""
    return torch.no_grad() if is_sharded(model) else torch.inference_mode()


def shard_base(model: Any, reshard_after_forward: bool = True) -> Any:
    """Shard the frozen base of an ``hf``-backend model over the process group with FSDP2
    (``torch.distributed.fsdp.fully_shard``, the engine under accelerate's FSDP plugin): one unit per
    decoder layer, the embeddings, last norm and unembedding in the root unit. At rest each rank keeps
    ``1 / world`` of every weight; a layer's are gathered while it runs (forward, and again in the
    backward pass), the root unit's from its forward to the next backward (FSDP's default for a root).
    The editor's parameters live outside the base: they stay whole and fp32 on every rank (replicated,
    their gradients all-reduced by DDP as without FSDP). Returns ``model`` (sharded in place); a no-op
    for one process.

    The weight fingerprint that saved edits carry is taken before sharding. Every rank must then make the
    same forward calls: jola_lens's trainer and likelihood scoring do; free generation (rows stop at
    different steps) is not run on a sharded base.
    """
    dist = current()
    if not dist.enabled:
        return model
    if is_sharded(model):
        return model
    from .backends.hf import HFHookedModel

    if not isinstance(model, HFHookedModel):
        raise ValueError(f"FSDP shards the hf backend's model; this is {type(model).__name__}: load it with "
                         "backend='hf' (--backend hf)")
    from torch.distributed.fsdp import fully_shard

    from .editors.base import weight_fingerprint

    model.weight_fingerprint_cache = weight_fingerprint(model)
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) > 1:
        raise ValueError(f"FSDP needs one dtype over the frozen base; it has {sorted(map(str, dtypes))}")
    kw: dict[str, Any] = {"reshard_after_forward": reshard_after_forward}
    if torch.cuda.is_available():  # one GPU per rank: FSDP moves each rank's shards onto it
        from torch.distributed.device_mesh import init_device_mesh

        torch.cuda.set_device(dist.local_rank)
        kw["mesh"] = init_device_mesh("cuda", (dist.world,))
    for layer in model.layers:
        fully_shard(layer, **kw)
    # the root unit: embeddings, last norm and unembedding (tied or not); as FSDP does for a root by default,
    # kept gathered after the forward (scoring applies the norm and unembedding to chosen positions after it)
    fully_shard(model, **{k: v for k, v in kw.items() if k != "reshard_after_forward"})
    model.cfg.device = next(model.parameters()).device
    model.fsdp_sharded = True
    return model
