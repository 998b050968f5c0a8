"""JoLAModel: a frozen HookedTransformer plus gated per-head edits applied through hooks.

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

import contextlib
import copy
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from .config import JoLAConfig
from .edits import HeadEdit, hook_name

SAVE_FORMAT = 1
EDITS_FILE = "edits.safetensors"
CONFIG_FILE = "jola_config.json"


class JoLALoadError(ValueError):
    """Saved edits could not be loaded onto this model; the message says what differs."""


def model_identity(model: Any) -> dict[str, Any]:
    """The fields a saved edit must match to be loaded onto ``model``."""
    c = model.cfg
    return {
        "model_name": c.model_name,
        "original_architecture": c.original_architecture,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "d_head": c.d_head,
        "d_model": c.d_model,
        "d_vocab": c.d_vocab,
    }


_SHAPE_KEYS = ("n_layers", "n_heads", "d_head", "d_model", "d_vocab")



@contextlib.contextmanager
def attached_hooks(model: Any, hooks: list[tuple[str, Callable[..., Tensor]]]) -> Iterator[Any]:
    """Add forward hooks ``(hook_name, fn)`` to a HookedTransformer for the ``with`` body only.

    Unlike ``model.hooks(...)`` this removes exactly the hooks it added, so hooks the user
    attached before stay in place.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, n_heads=2, d_vocab=5,
        ...                               act_fn="gelu")
        >>> m = HookedTransformer(cfg)
        >>> with attached_hooks(m, [("blocks.0.attn.hook_z", lambda z, hook: z * 0)]):
        ...     len(m.blocks[0].attn.hook_z.fwd_hooks)
        1
        >>> len(m.blocks[0].attn.hook_z.fwd_hooks)
        0
    """
    added = []
    try:
        for name, fn in hooks:
            hp = model.hook_dict[name]
            hp.add_hook(fn, dir="fwd")
            added.append((hp, hp.fwd_hooks[-1]))
        yield model
    finally:
        for hp, handle in added:
            handle.hook.remove()
            if handle in hp.fwd_hooks:
                hp.fwd_hooks.remove(handle)


class JoLAModel(nn.Module):
    """Wraps a HookedTransformer; freezes it; owns the JoLA edits.

    The base model's parameters never require grad (the unembedding included).
    Edits take effect only inside ``with jola.applied():`` (or through ``jola(...)``,
    ``jola.generate(...)``, or ``model.run_with_hooks(..., fwd_hooks=jola.fwd_hooks())``).
    """

    def __init__(self, model: Any, config: JoLAConfig | None = None) -> None:
        super().__init__()
        self.config = config or JoLAConfig()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
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
    def _assert_frozen(self) -> None:
        bad = [n for n, p in self.named_parameters() if p.requires_grad and not n.startswith("edits.")]
        if bad:
            raise RuntimeError(f"base-model parameters require grad: {bad[:5]}")

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

    def train(self, mode: bool = True) -> "JoLAModel":
        """Training mode for the edits (stochastic gates); the base model stays in eval mode."""
        self.training = mode
        self.edits.train(mode)
        self.model.eval()
        return self

    # ---- applying --------------------------------------------------------------------------
    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        """``(hook_name, fn)`` pairs, for ``model.run_with_hooks`` or ``model.hooks``."""
        return [h for e in self.edits.values() for h in e.fwd_hooks()]

    @contextlib.contextmanager
    def applied(self) -> Iterator["JoLAModel"]:
        """Attach the edit hooks for the body of the ``with`` block; always detach them.

        Only the hooks added here are removed: hooks the user attached stay in place.
        """
        with attached_hooks(self.model, self.fwd_hooks()):
            yield self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)`` with the edits applied."""
        with self.applied():
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``model.generate`` with the edits applied (deterministic gates unless in training mode)."""
        with self.applied():
            return self.model.generate(*args, **kwargs)

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
        target = self.model if inplace else copy.deepcopy(self.model)
        for site, e in self.edits.items():
            scale, shift = e.scale_and_shift()
            for layer in e.layers:
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
        return target

    # ---- save / load -----------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``edits.safetensors`` and ``jola_config.json`` into ``directory``."""
        from safetensors.torch import save_file

        from . import __version__

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {f"{site}.{n}": p.detach().cpu().contiguous() for site, e in self.edits.items()
                   for n, p in e.named_parameters()}
        tensors.update({f"{site}.mask": e.mask.cpu().contiguous() for site, e in self.edits.items()})
        import transformer_lens

        meta = {
            "format": SAVE_FORMAT,
            "library": "jola_lens",
            "library_version": __version__,
            "transformer_lens_version": getattr(transformer_lens, "__version__", "unknown"),
            "torch_version": torch.__version__,
            "model": model_identity(self.model),
            "hook_sites": {site: hook_name(site, 0).replace(".0.", ".{layer}.") for site in self.edits},
            "jola_config": self.config.to_dict(),
            "tensors": {k: list(v.shape) for k, v in tensors.items()},
        }
        if extra:
            meta["extra"] = extra
        tmp = d / (EDITS_FILE + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(d / EDITS_FILE)
        (d / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path, model: Any, *, check_model_name: bool = True) -> "JoLAModel":
        """Rebuild a JoLAModel from ``save``'s files onto ``model`` (which must match)."""
        d = Path(directory)
        cfg_path, edits_path = d / CONFIG_FILE, d / EDITS_FILE
        for p in (cfg_path, edits_path):
            if not p.is_file():
                raise JoLALoadError(f"{p} not found: a saved JoLA run holds {CONFIG_FILE} and {EDITS_FILE}")
        try:
            meta = json.loads(cfg_path.read_text())
            config = JoLAConfig.from_dict(meta["jola_config"])
            saved_identity = meta["model"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise JoLALoadError(f"{cfg_path} is not a valid JoLA config ({type(e).__name__}: {e})") from None
        here = model_identity(model)
        keys = list(_SHAPE_KEYS) + (["model_name"] if check_model_name else [])
        diffs = [f"{k}: saved {saved_identity.get(k)!r}, this model {here[k]!r}" for k in keys
                 if saved_identity.get(k) != here[k]]
        if diffs:
            raise JoLALoadError(f"the edits in {d} were trained on another model; " + "; ".join(diffs))
        try:
            from safetensors.torch import load_file

            tensors = load_file(str(edits_path))
        except Exception as e:
            raise JoLALoadError(f"{edits_path} is corrupted or not a safetensors file ({e})") from None
        jm = cls(model, config)
        own = {f"{site}.{n}": p for site, e in jm.edits.items() for n, p in e.named_parameters()}
        own.update({f"{site}.mask": e.mask for site, e in jm.edits.items()})
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise JoLALoadError(f"{edits_path}: missing tensors {missing}, unexpected tensors {unexpected}")
        with torch.no_grad():
            for k, p in own.items():
                t = tensors[k]
                if t.shape != p.shape:
                    raise JoLALoadError(f"{edits_path}: tensor {k} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
                p.copy_(t.to(p.device, p.dtype))
        return jm

    # ---- edit state (for checkpoints and best-model restore) --------------------------------
    def edit_state(self) -> dict[str, Tensor]:
        """A detached copy of every edit tensor (parameters and masks)."""
        return {k: v.detach().clone() for k, v in self.edits.state_dict().items()}

    def load_edit_state(self, state: dict[str, Tensor]) -> None:
        self.edits.load_state_dict(state)

    # ---- compatibility with the original `jola` package -----------------------------------
    @classmethod
    def jola_from_pretrained(
        cls,
        pretrained_model_name_or_path: str = "smollm2",
        cache_dir: str | None = None,
        applied_module: str = "attention",
        applied_layers: list[int] | None = None,
        torch_dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        **kwargs: Any,
    ) -> "JoLAModel":
        """The original package's constructor: load a model and attach JoLA edits.

        ``applied_module``: ``"attention"`` (the paper), ``"mlp"``, or ``"both"``.
        """
        from .loading import load_model

        sites = {"attention": ("attn",), "attn": ("attn",), "mlp": ("mlp",), "both": ("attn", "mlp")}
        if applied_module not in sites:
            raise ValueError(f"applied_module must be one of {sorted(sites)}, got {applied_module!r}")
        import dataclasses

        fields = {f.name for f in dataclasses.fields(JoLAConfig)}
        edit_kw = {k: v for k, v in kwargs.items() if k in fields}  # others (device_map, ...) are ignored
        model = load_model(pretrained_model_name_or_path, device=device, dtype=torch_dtype)
        return cls(model, JoLAConfig(layers=applied_layers, sites=sites[applied_module], **edit_kw))

    def unfreeze_jola_params(self) -> list[nn.Parameter]:
        """Original-package name: base frozen, edits trainable (already so here); returns the edit params."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.edits.parameters():
            p.requires_grad_(True)
        return self.edit_parameters()
