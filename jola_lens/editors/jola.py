"""JoLA as an editor: a frozen HookedTransformer plus gated per-head edits on ``hook_z``.

``JoLAModel`` (the first release's name) is this class.

Example (a tiny random model; the same code runs on ``load_model()``):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens import JoLAModel
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> jm = JoLAModel(HookedTransformer(cfg)).eval()
    >>> tokens = torch.randint(0, 50, (1, 6))
    >>> with jm.applied():
    ...     logits = jm.model(tokens)
    >>> logits.shape
    torch.Size([1, 6, 50])
    >>> jm.n_trainable_parameters()
    80
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ..config import JoLAConfig
from ..edits import HeadEdit, hook_name
from .base import Editor, EditorLoadError, attached_hooks, model_identity  # noqa: F401  (re-exported)
from .io import CONFIG_FILE, EDITS_FILE  # noqa: F401  (re-exported)

SAVE_FORMAT = 2
#: the first release's name of the load error (every editor raises it now)
JoLALoadError = EditorLoadError
_SHAPE_KEYS = ("n_layers", "n_heads", "d_head", "d_model", "d_vocab")


class JoLAModel(Editor):
    """JoLA: gated additive + multiplicative edits of every head's output (``hook_z``).

    The base model's parameters never require grad (the unembedding included).
    Edits take effect only inside ``with jola.applied():`` (or through ``jola(...)``,
    ``jola.generate(...)``, or ``model.run_with_hooks(..., fwd_hooks=jola.fwd_hooks())``).
    """

    backends = ("hooked", "bridge", "hf")
    name = "jola"
    display_name = "JoLA"
    config_cls = JoLAConfig
    supports_merge = True
    uses_positions = False

    def __init__(self, model: Any, config: JoLAConfig | None = None, **options: Any) -> None:
        from .base import resolve_config

        super().__init__(model, resolve_config(JoLAConfig, config, options))
        c = model.cfg
        edits = {}
        for site in self.config.sites:
            if site == "attn":
                edits[site] = HeadEdit(c.n_layers, c.n_heads, c.d_head, self.config, site)
            else:
                edits[site] = HeadEdit(c.n_layers, 1, c.d_model, self.config, site)
        self.edits = nn.ModuleDict(edits)
        device = next(model.parameters()).device
        self.edits.to(device)
        self._assert_frozen()

    # ---- parameters ------------------------------------------------------------------------
    def edit_parameters(self) -> list[nn.Parameter]:
        """Every trainable tensor (edit vectors and gate log-alphas)."""
        self._assert_frozen()
        return [p for p in self.edits.parameters() if p.requires_grad]

    def named_edit_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for n, p in self.edits.named_parameters():
            yield n, p

    def n_trainable_parameters(self) -> int:
        """Parameters that can change the output (SmolLM2, default config: 30*9*(2*64+2) = 35,100)."""
        return sum(e.n_trainable() for e in self.edits.values())

    # ---- applying --------------------------------------------------------------------------
    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        """``(hook_name, fn)`` pairs, for ``model.run_with_hooks`` or ``model.hooks``."""
        return [h for e in self.edits.values() for h in e.fwd_hooks()]

    # ---- the trainer's view ---------------------------------------------------------------
    def penalty_schedule(self, config: Any, total_steps: int) -> Any:
        """The gate-penalty weight over training (``config.gate_schedule``, ``config.gate_lambda``)."""
        from ..schedule import GateSchedule

        self._penalty_kind = config.penalty
        return GateSchedule(config.gate_schedule, config.gate_lambda, total_steps)

    def penalty(self, step: int, weight: float) -> Tensor | float:
        """The expected-L0 gate penalty (``TrainConfig.penalty``: paper / jola_code / none) at ``weight``."""
        from ..schedule import gate_penalty

        kind = getattr(self, "_penalty_kind", "paper")
        n_heads = self.model.cfg.n_heads
        return sum(gate_penalty(e.prob_open(), weight, kind, n_heads) for e in self.edits.values())

    def progress_stats(self) -> dict[str, int]:
        """Open-gate counts of the attention site (additive, multiplicative, total)."""
        return self.open_gate_counts() if "attn" in self.edits else {}

    def gate_snapshot(self) -> dict[str, Tensor] | None:
        """Gate values of the attention site for the gate log: per kind the values the last forward
        pass used, the deterministic values and P(open), each ``[n_layers, n_heads]``."""
        if "attn" not in self.edits:
            return None
        e = self.edits["attn"]
        det = e.deterministic_gates()
        po = self.prob_open("attn")
        used = e.last_gates or det
        out = {}
        for k in e.kinds():
            for what, src in (("value", used), ("deterministic", det), ("prob_open", po)):
                out[f"{k}.{what}"] = src[k].detach().float().cpu().clone()
        return out

    def summary(self) -> dict[str, Any]:
        """Trainable parameters, open gates per site and the open heads of the attention site."""
        out: dict[str, Any] = {"editor": self.name, "trainable_params": self.n_trainable_parameters(),
                               "open_gates": {site: self.open_gate_counts(site) for site in self.edits}}
        if "attn" in self.edits:
            out["open_heads"] = int(self.open_mask().sum())
            out["active_heads"] = self.active_heads()
        return out

    def set_head_mask(self, mask: Bool[Tensor, "n_layers n_heads"] | None, site: str = "attn") -> None:
        """Allow edits only on the True heads (e.g. a selector's choice); ``None`` clears the mask."""
        self.edits[site].set_head_mask(mask)

    # ---- gate summaries -------------------------------------------------------------------
    def gates(self, site: str = "attn") -> dict[str, Float[Tensor, "n_layers n_heads"]]:
        """Deterministic gate values per edit kind (``"a"``, ``"m"``)."""
        return self.edits[site].deterministic_gates()

    def prob_open(self, site: str = "attn") -> dict[str, Float[Tensor, "n_layers n_heads"]]:
        with torch.no_grad():
            return {k: v.detach() for k, v in self.edits[site].prob_open().items()}

    def open_mask(self, site: str = "attn") -> Bool[Tensor, "n_layers n_heads"]:
        """Heads whose edit is non-zero at evaluation (any deterministic gate > 0)."""
        g = self.gates(site)
        out = torch.zeros_like(next(iter(g.values())), dtype=torch.bool)
        for v in g.values():
            out |= v > 0
        return out

    def active_heads(self, site: str = "attn", threshold: float = 0.0) -> list[dict[str, Any]]:
        """One row per (layer, head) with a gate above ``threshold``: layer, head, g_a, g_m, |a|, |m|.

        Sorted by the larger of the two gates, then by edit norm.
        """
        e = self.edits[site]
        g = self.gates(site)
        rows = []
        with torch.no_grad():
            na = e.a.norm(dim=-1) if e.a is not None else None
            nm = e.m.norm(dim=-1) if e.m is not None else None
            for layer in range(e.n_layers):
                for head in range(e.n_units):
                    ga = float(g["a"][layer, head]) if "a" in g else 0.0
                    gm = float(g["m"][layer, head]) if "m" in g else 0.0
                    if max(ga, gm) <= threshold:
                        continue
                    rows.append(
                        {
                            "layer": layer,
                            "head": head,
                            "g_a": ga,
                            "g_m": gm,
                            "norm_a": float(na[layer, head]) if na is not None else 0.0,
                            "norm_m": float(nm[layer, head]) if nm is not None else 0.0,
                        }
                    )
        rows.sort(key=lambda r: (-max(r["g_a"], r["g_m"]), -(r["g_a"] * r["norm_a"] + r["g_m"] * r["norm_m"])))
        return rows

    def open_gate_counts(self, site: str = "attn") -> dict[str, int]:
        """How many gates of each kind are open (deterministic value > 0), and the total."""
        g = self.gates(site)
        counts = {"additive": int((g["a"] > 0).sum()) if "a" in g else 0,
                  "multiplicative": int((g["m"] > 0).sum()) if "m" in g else 0}
        counts["total"] = counts["additive"] + counts["multiplicative"]
        return counts

    # ---- merge -----------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, inplace: bool = False) -> Any:
        """Fold the deterministic edits into the weights; returns a plain HookedTransformer.

        Attention: ``W_O[l, h] <- diag(1 + g_m m) W_O[l, h]`` and
        ``b_O[l] += sum_h (g_a a_h) W_O[l, h]`` (with the original W_O).
        MLP site: ``W_out[l] <- W_out[l] diag(1 + g_m m)``, ``b_out[l] <- (1 + g_m m) b_out[l] + g_a a``.
        Exact: logits match the hooked model to float rounding, with no runtime cost.
        """
        return super().merge(inplace=inplace)

    @torch.no_grad()
    def _merge_into(self, target: Any) -> None:
        from ..backends import backend_of
        from ..backends.hf import fold_head_edit, fold_mlp_edit

        on_hf = backend_of(target) in ("hf", "bridge")  # the HF weights (under the bridge: still the HF modules)
        for site, e in self.edits.items():
            scale, shift = e.scale_and_shift()
            for layer in e.layers:
                if on_hf:  # the HF weights themselves (o_proj / down projection)
                    if site == "attn":
                        fold_head_edit(target, layer, scale[layer], shift[layer])
                    else:
                        fold_mlp_edit(target, layer, scale[layer, 0], shift[layer, 0])
                    continue
                block = target.blocks[layer]
                if site == "attn":
                    W_O = block.attn.W_O  # [n_heads, d_head, d_model]
                    s = scale[layer].to(W_O.dtype)
                    c = shift[layer].to(W_O.dtype)
                    block.attn.b_O.add_(torch.einsum("hd,hdm->m", c, W_O))
                    W_O.mul_(s[:, :, None])
                else:
                    W_out = block.mlp.W_out  # [d_mlp, d_model]
                    s = scale[layer, 0].to(W_out.dtype)
                    c = shift[layer, 0].to(W_out.dtype)
                    W_out.mul_(s[None, :])
                    block.mlp.b_out.copy_(block.mlp.b_out * s + c)

    # ---- save / load -----------------------------------------------------------------------
    def run_metadata(self) -> dict[str, Any]:
        """The first release's keys of ``jola_config.json``, still written: ``jola_config``, ``hook_sites``."""
        return {"jola_config": self.config.to_dict(),
                "hook_sites": {site: hook_name(site, 0).replace(".0.", ".{layer}.") for site in self.edits}}

    @classmethod
    def load(cls, directory: str | Path, model: Any, *, check_model_name: bool = True,
             is_trainable: bool = False) -> "JoLAModel":
        """Rebuild a JoLAModel from ``save``'s files onto ``model`` (which must match), in eval mode
        (deterministic gates) unless ``is_trainable``; :func:`jola_lens.editors.load_editor` for any editor."""
        return super().load(directory, model, check_model_name=check_model_name, is_trainable=is_trainable)

    # ---- edit state (for checkpoints and best-model restore) --------------------------------
    def edit_state(self) -> dict[str, Tensor]:
        """A detached copy of every edit tensor (parameters and masks)."""
        return {k: v.detach().clone() for k, v in self.edits.state_dict().items()}

    def load_edit_state(self, state: dict[str, Tensor]) -> None:
        """Copy ``state`` (as from :meth:`edit_state`) into the edits; names and shapes must match."""
        own = self.edits.state_dict(keep_vars=True)
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"missing tensors {missing}, unexpected tensors {unexpected}")
        with torch.no_grad():
            for k, t in own.items():
                if tuple(state[k].shape) != tuple(t.shape):
                    raise ValueError(f"tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(t.shape)}")
                t.copy_(state[k].to(t.device, t.dtype))


    # ---- the original jola package's names (jola_lens.compat) ---------------------------------------
    @classmethod
    def jola_from_pretrained(cls, pretrained_model_name_or_path: str = "smollm2", **kwargs: Any) -> "JoLAModel":
        """The original package's constructor: :func:`jola_lens.compat.jola_from_pretrained`."""
        from ..compat import jola_from_pretrained

        return jola_from_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    def unfreeze_jola_params(self) -> list[nn.Parameter]:
        """Original-package name: base frozen, edits trainable; :func:`jola_lens.compat.unfreeze_jola_params`."""
        from ..compat import unfreeze_jola_params

        return unfreeze_jola_params(self)


def saved_head_gates(run: Any, site: str = "attn") -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Final deterministic gates and edit norms per head of a saved JoLA run (a
    :class:`~jola_lens.editors.io.SavedRun`), without building a model.

    gate = clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1) with the saved limits, times the
    saved head mask (a shared gate serves both kinds; without gates the value is the mask); norms
    are ``|a|`` and ``|m|`` per head. Returns ``(gates, norms)``, each ``{"a": ..., "m": ...}`` for
    the kinds the run edits, each ``[n_layers, n_heads]``.
    """
    from ..gates import deterministic

    if run.editor != "jola":
        raise ValueError(f"{run.path} is a {run.editor} run, not a JoLA run: it has no gates")
    config = JoLAConfig.from_dict(run.config)
    t = run.tensors
    if f"{site}.mask" not in t:
        saved = sorted({k.split(".")[0] for k in t})
        raise ValueError(f"{run.path}/{EDITS_FILE} holds no edits for site {site!r}; saved sites: {saved}")
    mask = t[f"{site}.mask"].float()
    gates: dict[str, Tensor] = {}
    norms: dict[str, Tensor] = {}
    for k in ("a", "m"):
        if f"{site}.{k}" not in t:
            continue
        log_alpha = t.get(f"{site}.gate_shared.log_alpha", t.get(f"{site}.gate_{k}.log_alpha"))
        g = torch.ones_like(mask) if log_alpha is None else deterministic(log_alpha.float(), tuple(config.limits))
        gates[k] = g * mask
        norms[k] = t[f"{site}.{k}"].float().norm(dim=-1)
    return gates, norms
