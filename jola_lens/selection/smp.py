"""SMP, Single-Shot Meta-Pruning (Zhang et al. 2021), adapted to causal attention.

**Scorer.** A small CNN reads one head's attention pattern and outputs a score in [0, 2]:
five convolutions (kernel 4, stride 2, padding 1; widths ndf, 2ndf, 4ndf, 8ndf, 16ndf;
LeakyReLU 0.2; BatchNorm on all but the first), a last convolution to one channel whose kernel
covers what is left (``size // 32``), a sigmoid, times 2. Conv weights ~ N(0, 0.01), BatchNorm
weights ~ N(1, 0.01). The input is the head's ``[query, key]`` pattern of one example, cropped to
the example's length, zero-padded to ``size x size`` (64 by default) or average-pooled down to it
when longer; a second channel holds the causal/padding mask (1 where a query may attend), so the
CNN sees where the sequence ends (``mask_channel=False``: the pattern only, as the original).

**Meta-training** (:func:`meta_train_smp`; the language model is frozen, only the CNN trains).
Each step takes a batch from one task (round robin), scores every head (CNN output averaged over
the batch), keeps a random half of the layers intact and, in each other layer, keeps ``H // 2``
heads drawn by hard (straight-through) Gumbel-softmax draws over ``log(score)`` (up to 5H draws,
until ``H // 2`` distinct heads; the kept set is ``1 - prod(1 - draw)``, differentiable in the
scores). The mask multiplies ``hook_z``. The loss is the KL divergence between the row-softmaxes
of ``10 x`` the pairwise cosine-similarity matrices of the batch's mean-centred, mean-pooled final
representations (``ln_final`` of the last residual stream, over non-padding tokens) without and
with the mask, times ``kl_scale`` (10, SMP's mean-pool mode). SGD lr 2e-2, gradient clipping 1.0.
At the end the BatchNorm statistics are recomputed with the final weights
(:func:`recalibrate_batchnorm`): with the N(0, 0.01) initialisation the exponential running
averages lag so far behind that the eval-mode scorer would give every head the same score.
SMP's SGD at lr 2e-2 learns slowly (the original ran 6,000 steps of 480 examples);
``optimizer="adam"`` with lr 1e-3 moves much faster on small budgets.

**Selection** (``select("smp", ...)``): the trained CNN scores every head on every training
example; scores are averaged over the examples; the mask is the global top K when ``k`` is given,
else the per-layer top ``fraction`` (SMP: keep half of each layer). With no ``scorer`` option, the
bundled scorer (``jola_lens/assets/smp_scorer_smollm2``) is used when it exists and was trained on
a model of the same name; otherwise a scorer is meta-trained on the selection data for
``meta_steps`` steps (recorded in ``record["scorer"]``).

Example (a tiny random model; a few meta-training steps):
    >>> import torch, tempfile
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> model = HookedTransformer(cfg)
    >>> data = [{"input_ids": list(range(i, i + 6)), "labels": [-100] * 4 + [i + 4, i + 5]} for i in range(8)]
    >>> scorer, history = meta_train_smp(model, {"toy": data}, steps=2, batch_size=4)
    >>> len(history["loss"])
    2
    >>> with tempfile.TemporaryDirectory() as d:
    ...     same = load_scorer(save_scorer(scorer, d))
    >>> s1, s2 = head_scores(scorer, model, data), head_scores(same, model, data)
    >>> tuple(s1.shape), torch.equal(s1, s2)
    ((2, 4), True)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ..editors.base import attached_hooks
from ..train import collate
from .base import (
    SelectionResult,
    head_scale_hooks,
    pad_id_of,
    per_layer_top_fraction,
    register_selector,
    top_k_mask,
    training_batches,
)

SCORER_TENSORS = "scorer.safetensors"
SCORER_JSON = "scorer.json"
DEFAULT_SCORER_DIR = Path(__file__).resolve().parents[1] / "assets" / "smp_scorer_smollm2"


# ---- the CNN ----------------------------------------------------------------------------------------
class SMPScorer(nn.Module):
    """The SMP head scorer: attention-pattern images ``[N, C, size, size]`` -> scores ``[N]`` in [0, 2].

    Example:
        >>> s = SMPScorer(ndf=4, size=64).eval()
        >>> s(torch.rand(3, 2, 64, 64)).shape
        torch.Size([3])
    """

    def __init__(self, ndf: int = 4, size: int = 64, mask_channel: bool = True, init_std: float | None = 0.01) -> None:
        super().__init__()
        self.init_std = init_std
        if size < 32 or size % 32:
            raise ValueError(f"size must be a multiple of 32 (five stride-2 convolutions), got {size}")
        self.ndf, self.size, self.mask_channel = int(ndf), int(size), bool(mask_channel)
        in_ch = 2 if mask_channel else 1
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        width = ndf
        for _ in range(4):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        layers.append(nn.Conv2d(width, 1, size // 32, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init_std is None:  # PyTorch's default initialisation
            return
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.normal_(0.0, self.init_std)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.normal_(1.0, self.init_std)
                mod.bias.zero_()

    @property
    def in_channels(self) -> int:
        return 2 if self.mask_channel else 1

    def config(self) -> dict[str, Any]:
        return {"ndf": self.ndf, "size": self.size, "mask_channel": self.mask_channel, "init_std": self.init_std}

    def forward(self, images: Float[Tensor, "n channel size size"]) -> Float[Tensor, " n"]:
        return 2.0 * torch.sigmoid(self.net(images).reshape(-1))


def save_scorer(scorer: SMPScorer, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``scorer.safetensors`` (weights and BatchNorm statistics) and ``scorer.json`` (no pickle)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()}
    save_file(tensors, str(d / SCORER_TENSORS))
    (d / SCORER_JSON).write_text(json.dumps({"format": 1, "config": scorer.config(), "meta": meta or {}}, indent=2))
    return d


def load_scorer(directory: str | Path, device: Any = "cpu") -> SMPScorer:
    """Rebuild a scorer saved by :func:`save_scorer` (in eval mode)."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / SCORER_TENSORS).is_file() or not (d / SCORER_JSON).is_file():
        raise FileNotFoundError(f"no SMP scorer in {d} (expected {SCORER_TENSORS} and {SCORER_JSON})")
    meta = json.loads((d / SCORER_JSON).read_text())
    scorer = SMPScorer(**meta["config"])
    scorer.load_state_dict(load_file(str(d / SCORER_TENSORS)))
    scorer.meta = meta.get("meta", {})  # type: ignore[assignment]
    return scorer.to(device).eval()


# ---- attention images --------------------------------------------------------------------------------
def attention_images(
    pattern: Float[Tensor, "batch head query key"],
    lengths: Sequence[int],
    size: int,
    mask_channel: bool = True,
) -> Float[Tensor, "batch head channel size size"]:
    """Each example's pattern cropped to its length, padded (or average-pooled) to ``size x size``.

    Example:
        >>> p = torch.tril(torch.ones(1, 1, 3, 3))
        >>> img = attention_images(p / p.sum(-1, keepdim=True), [2], size=4)
        >>> img[0, 0, 1].tolist()  # the causal/padding mask channel
        [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    out = []
    for b, n in enumerate(lengths):
        n = int(n)
        p = pattern[b, :, :n, :n].float()
        chans = [p]
        if mask_channel:
            chans.append(torch.tril(torch.ones(n, n, device=p.device)).expand_as(p))
        img = torch.stack(chans, dim=1)  # [head, channel, n, n]
        if n <= size:
            img = F.pad(img, (0, size - n, 0, size - n))
        else:
            img = F.adaptive_avg_pool2d(img, size)
        out.append(img)
    return torch.stack(out)


def _valid_lengths(attention_mask: Tensor) -> list[int]:
    return [int(x) for x in attention_mask.sum(1)]


def _pattern_hooks(model: Any, store: dict[int, Tensor], lengths: list[int], scorer: SMPScorer) -> list[Any]:
    def make(layer: int) -> Any:
        def grab(pattern: Tensor, hook: Any = None) -> Tensor:
            store[layer] = attention_images(pattern.detach(), lengths, scorer.size, scorer.mask_channel)
            return pattern

        return grab

    return [(f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in range(model.cfg.n_layers)]


def _pooled(model: Any, input_ids: Tensor, attention_mask: Tensor) -> Float[Tensor, "batch d_model"]:
    """Mean over non-padding tokens of ``ln_final`` applied to the last residual stream."""
    resid = model(input_ids, attention_mask=attention_mask, stop_at_layer=model.cfg.n_layers)
    h = model.ln_final(resid)
    m = attention_mask.to(h.dtype)[..., None]
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def _images_and_reps(
    scorer: SMPScorer, model: Any, batch: Mapping[str, Tensor], need_reps: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Unmasked forward pass: images ``[batch, layer, head, C, S, S]`` and pooled representations."""
    store: dict[int, Tensor] = {}
    lengths = _valid_lengths(batch["attention_mask"])
    with torch.no_grad(), attached_hooks(model, _pattern_hooks(model, store, lengths, scorer)):
        reps = _pooled(model, batch["input_ids"], batch["attention_mask"])
    images = torch.stack([store[layer] for layer in range(model.cfg.n_layers)], dim=1)
    return images, (reps if need_reps else None)


def _score_images(scorer: SMPScorer, images: Tensor) -> Float[Tensor, "batch n_layers n_heads"]:
    b, L, H = images.shape[:3]
    dev = next(scorer.parameters()).device
    return scorer(images.reshape(b * L * H, *images.shape[3:]).to(dev)).reshape(b, L, H)


@torch.no_grad()
def head_scores(
    scorer: SMPScorer, model: Any, data: Sequence[Mapping[str, Any]], batch_size: int = 8
) -> Float[Tensor, "n_layers n_heads"]:
    """The scorer's output per head, averaged over every example of ``data`` (eval mode)."""
    was = scorer.training
    scorer.eval()
    total = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    count = 0
    pad = pad_id_of(model)
    device = model.cfg.device
    for start in range(0, len(data), batch_size):
        b = collate(list(data[start:start + batch_size]), pad)
        b = {key: v.to(device) for key, v in b.items()}
        images, _ = _images_and_reps(scorer, model, b, need_reps=False)
        s = _score_images(scorer, images)
        total += s.sum(0).float().cpu()
        count += s.shape[0]
    scorer.train(was)
    return total / max(count, 1)


# ---- meta-training -------------------------------------------------------------------------------------
def sample_head_mask(
    scores: Float[Tensor, "n_layers n_heads"],
    generator: torch.Generator | None = None,
    tau: float = 1.0,
    max_draws_per_head: int = 5,
) -> Float[Tensor, "n_layers n_heads"]:
    """SMP's training mask: half the layers intact, ``H // 2`` heads kept in each other layer.

    The kept heads are drawn with hard (straight-through) Gumbel-softmax over ``log(scores)``,
    so the 0/1 mask is differentiable in ``scores``.

    Example:
        >>> m = sample_head_mask(torch.rand(4, 6) + 0.1, torch.Generator().manual_seed(0))
        >>> sorted(m.sum(1).round().int().tolist())
        [3, 3, 6, 6]
    """
    L, H = scores.shape
    n_keep = max(1, H // 2)
    perm = torch.randperm(L, generator=generator).tolist()
    pruned = sorted(perm[: L - L // 2])
    logits = torch.log(scores.clamp_min(1e-6))
    rows = []
    for layer in range(L):
        if layer not in pruned:
            rows.append(torch.ones(H, dtype=scores.dtype, device=scores.device))
            continue
        keep_not = torch.ones(H, dtype=scores.dtype, device=scores.device)
        chosen: set[int] = set()
        for _ in range(max_draws_per_head * H):
            u = torch.rand(H, generator=generator, dtype=scores.dtype).to(scores.device).clamp(1e-10, 1 - 1e-10)
            y_soft = torch.softmax((logits[layer] - torch.log(-torch.log(u))) / tau, dim=0)
            idx = int(y_soft.argmax())
            y = F.one_hot(torch.tensor(idx), H).to(y_soft) - y_soft.detach() + y_soft
            keep_not = keep_not * (1.0 - y)
            chosen.add(idx)
            if len(chosen) >= n_keep:
                break
        rows.append(1.0 - keep_not)
    return torch.stack(rows)


def representation_kl(
    reference: Float[Tensor, "batch d"], pruned: Float[Tensor, "batch d"], scale: float = 10.0
) -> Tensor:
    """KL(softmax(scale * cos(ref)) || softmax(scale * cos(pruned))), rows averaged.

    Cosine similarities are between mean-centred representations of the batch.

    Example:
        >>> x = torch.randn(5, 8)
        >>> float(representation_kl(x, x)) == 0.0, float(representation_kl(x, torch.randn(5, 8))) > 0
        (True, True)
    """

    def log_probs(r: Tensor) -> Tensor:
        r = F.normalize(r - r.mean(0, keepdim=True), dim=-1, eps=1e-8)
        return torch.log_softmax(scale * r @ r.T, dim=-1)

    lp, lq = log_probs(reference.float()), log_probs(pruned.float())
    return (lp.exp() * (lp - lq)).sum(-1).mean()


def smp_meta_loss(
    scorer: SMPScorer,
    model: Any,
    batch: Mapping[str, Tensor],
    generator: torch.Generator | None = None,
    kl_scale: float = 10.0,
    feature_keep: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One meta-training objective evaluation: ``(loss, head scores [L, H])``.

    ``feature_keep`` (e.g. 0.8, SMP's dropout) multiplies both representations by the same random
    0/1 feature mask; ``None`` uses every feature.
    """
    images, ref = _images_and_reps(scorer, model, batch)
    scores = _score_images(scorer, images).mean(0)
    mask = sample_head_mask(scores, generator)
    hooks = head_scale_hooks(model, lambda layer: mask[layer])
    with attached_hooks(model, hooks):
        pruned = _pooled(model, batch["input_ids"], batch["attention_mask"])
    assert ref is not None
    if feature_keep is not None:
        keep = (torch.rand(ref.shape[-1], generator=generator) < feature_keep).to(ref)
        ref, pruned = ref * keep, pruned * keep
    return kl_scale * representation_kl(ref, pruned.to(scores.device)), scores


def meta_train_smp(
    model: Any,
    task_datasets: Mapping[str, Sequence[Mapping[str, Any]]] | Sequence[Sequence[Mapping[str, Any]]],
    steps: int,
    *,
    scorer: SMPScorer | None = None,
    batch_size: int = 8,
    lr: float = 2e-2,
    max_grad_norm: float = 1.0,
    ndf: int = 4,
    size: int = 64,
    mask_channel: bool = True,
    kl_scale: float = 10.0,
    feature_keep: float | None = None,
    seed: int = 0,
    optimizer: str = "sgd",
    recalibration_batches: int = 8,
    progress: bool = False,
    log_every: int = 0,
) -> tuple[SMPScorer, dict[str, Any]]:
    """Meta-train an SMP scorer on a frozen model over several tasks.

    Args:
        task_datasets: tokenised examples per task (a dict name -> rows, or a list of row lists).
        steps: optimiser steps (one batch each; tasks in turn).
        scorer: continue training this scorer (default: a new ``SMPScorer(ndf, size, mask_channel)``).
        batch_size: examples per step (>= 2: the loss compares examples with each other).
        lr, max_grad_norm: SGD learning rate and gradient clipping (SMP: 2e-2, 1.0).
        kl_scale, feature_keep: see :func:`smp_meta_loss`.
        optimizer: ``"sgd"`` (SMP) or ``"adam"``.
        recalibration_batches: batches (tasks in turn) over which the BatchNorm statistics are
            recomputed at the end (see :func:`recalibrate_batchnorm`); 0 keeps the running averages.
        log_every: print the running loss every this many steps (0: never).

    Returns:
        ``(scorer, history)``; history has per-step ``loss``, ``task``, and ``seconds``.
    """
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2 (the loss compares the examples of a batch)")
    tasks = dict(task_datasets) if isinstance(task_datasets, Mapping) else {
        f"task{i}": rows for i, rows in enumerate(task_datasets)}
    tasks = {name: list(rows) for name, rows in tasks.items() if len(rows) >= 2}
    if not tasks:
        raise ValueError("meta-training needs at least one task with two or more examples")
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    torch.manual_seed(seed)
    scorer = scorer if scorer is not None else SMPScorer(ndf, size, mask_channel)
    device = model.cfg.device
    scorer.to(device).train()
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(scorer.parameters(), lr=lr)
    elif optimizer == "adam":
        opt = torch.optim.Adam(scorer.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer must be 'sgd' (SMP) or 'adam', got {optimizer!r}")
    gen = torch.Generator().manual_seed(seed)
    pad = pad_id_of(model)
    iters = {name: _cycle(rows, batch_size, seed + i, pad, device) for i, (name, rows) in enumerate(tasks.items())}
    names = list(tasks)
    history: dict[str, Any] = {"loss": [], "task": [], "seconds": 0.0}
    start = time.time()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="SMP meta-train", unit="step")
    for step in range(steps):
        name = names[step % len(names)]
        batch = next(iters[name])
        loss, _ = smp_meta_loss(scorer, model, batch, gen, kl_scale, feature_keep)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(scorer.parameters(), max_grad_norm)
        opt.step()
        history["loss"].append(float(loss.detach()))
        history["task"].append(name)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
        if log_every and (step + 1) % log_every == 0:
            recent = history["loss"][-log_every:]
            print(f"[smp] step {step + 1}/{steps} loss {sum(recent) / len(recent):.4f} "
                  f"({time.time() - start:.0f}s)", flush=True)
    if bar is not None:
        bar.close()
    calib = [next(iters[names[i % len(names)]]) for i in range(recalibration_batches)]
    recalibrate_batchnorm(scorer, model, calib)
    history["seconds"] = time.time() - start
    history["settings"] = {"steps": steps, "batch_size": batch_size, "lr": lr, "max_grad_norm": max_grad_norm,
                           "optimizer": optimizer, "recalibration_batches": recalibration_batches, "kl_scale": kl_scale,
                           "feature_keep": feature_keep, "seed": seed,
                           "tasks": {n: len(r) for n, r in tasks.items()}, **scorer.config()}
    scorer.eval()
    return scorer, history


@torch.no_grad()
def recalibrate_batchnorm(scorer: SMPScorer, model: Any, batches: Sequence[Mapping[str, Tensor]]) -> None:
    """Recompute the BatchNorm running statistics as plain averages over ``batches``.

    The conv weights start at N(0, 0.01), so activations are tiny early in training and grow
    by orders of magnitude; the exponential running averages (momentum 0.1, initial variance 1)
    lag far behind, and in eval mode the scorer then outputs nearly the same score for every
    head. Re-estimating the statistics with the final weights (standard BN recalibration)
    makes eval-mode scores match what training optimised. No-op for an empty ``batches``.
    """
    if not batches:
        return
    bns = [mod for mod in scorer.modules() if isinstance(mod, nn.BatchNorm2d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    was = scorer.training
    scorer.train()
    for batch in batches:
        images, _ = _images_and_reps(scorer, model, batch, need_reps=False)
        _score_images(scorer, images)
    for bn, mom in zip(bns, saved):
        bn.momentum = mom
    scorer.train(was)


def _cycle(rows: list[Mapping[str, Any]], batch_size: int, seed: int, pad: int, device: Any) -> Any:
    """Endless length-bucketed batches of ``rows`` (reshuffled every pass; no batch of one)."""
    epoch = 0
    while True:
        produced = False
        for b in training_batches(rows, batch_size, seed + epoch, 1, None, pad, device):
            if b["input_ids"].shape[0] >= 2:
                produced = True
                yield b
        if not produced:
            raise ValueError("no batch with two or more examples")
        epoch += 1


# ---- the selector ---------------------------------------------------------------------------------------
def _resolve_scorer(model: Any, train_data: list[dict[str, Any]], scorer: Any, meta_steps: int,
                    batch_size: int, seed: int) -> tuple[SMPScorer, dict[str, Any]]:
    if isinstance(scorer, SMPScorer):
        return scorer, {"source": "given"}
    if scorer is not None:
        return load_scorer(scorer, model.cfg.device), {"source": str(scorer)}
    if DEFAULT_SCORER_DIR.is_dir():
        meta = json.loads((DEFAULT_SCORER_DIR / SCORER_JSON).read_text()).get("meta", {})
        if meta.get("model_name") and meta.get("model_name") == getattr(model.cfg, "model_name", None):
            return load_scorer(DEFAULT_SCORER_DIR, model.cfg.device), {"source": str(DEFAULT_SCORER_DIR)}
    trained, history = meta_train_smp(model, {"selection_data": train_data}, meta_steps,
                                      batch_size=min(batch_size, max(2, len(train_data))), seed=seed)
    return trained, {"source": f"meta-trained on the selection data ({meta_steps} steps)",
                     "meta_loss": history["loss"], "meta_seconds": history["seconds"]}


@register_selector("smp")
def select_smp(
    model: Any,
    train_data: list[dict[str, Any]],
    *,
    k: int | None,
    seed: int = 0,
    scorer: SMPScorer | str | Path | None = None,
    fraction: float = 0.5,
    meta_steps: int = 20,
    batch_size: int = 8,
) -> SelectionResult:
    """SMP head selection: a meta-trained CNN scores each head's attention patterns.

    Args:
        scorer: an :class:`SMPScorer`, a directory saved by :func:`save_scorer`, or ``None``
            (the bundled scorer for its model, else meta-train ``meta_steps`` on ``train_data``).
        fraction: with ``k=None``, the share of heads kept in every layer (SMP: 0.5).
        meta_steps: meta-training steps when no scorer is available.
        batch_size: batch size for scoring (and meta-training).
    """
    sc, source = _resolve_scorer(model, train_data, scorer, meta_steps, batch_size, seed)
    scores = head_scores(sc, model, train_data, batch_size)
    mask: Bool[Tensor, "n_layers n_heads"] = (per_layer_top_fraction(scores, fraction) if k is None
                                              else top_k_mask(scores, k))
    record = {
        "settings": {"fraction": fraction, "meta_steps": meta_steps, "batch_size": batch_size, **sc.config()},
        "steps": len(source.get("meta_loss", [])),
        "scorer": source,
        "rule": f"per-layer top {fraction:.0%}" if k is None else "global top-k of mean CNN score",
    }
    return SelectionResult(scores, mask, "smp", int(mask.sum()), record)


