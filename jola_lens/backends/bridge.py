"""The ``bridge`` backend: TransformerLens's ``TransformerBridge`` (TransformerLens 3.9 and 4.x).

``TransformerBridge.boot_transformers(..., hf_model=...)`` wraps an HF causal LM in place: its modules
become bridge components carrying TransformerLens hook points (``blocks.{l}.attn.hook_z`` is an alias
of ``blocks.{l}.attn.o.hook_in``, the output projection's input viewed as ``[batch, pos, n_heads,
d_head]``). :class:`BridgeHookedModel` puts the editors' interface (the one the ``hf`` backend gives,
:class:`~jola_lens.backends.hf.HFHookedModel`) on top of such a model: the editors attach to the
bridge's own hook points, and ``model.bridge`` is the TransformerBridge itself, for everything else
TransformerLens offers (``run_with_cache``, its hook names, its analysis tools).

Two things differ from calling the bridge directly, both measured in ``tests/test_backends.py``:

* the forward pass runs the wrapped HF decoder with jola_lens's position ids (left-padded rows count
  their real tokens) and KV cache, as the ``hf`` backend does, so the three backends agree on
  padded batches;
* ``transformers`` 5.x passes the layer cache as ``cache=``; the bridge's attention reads
  ``past_key_values=`` (or ``layer_past=``), so without help it never fills the cache and cached
  decoding attends to nothing but the new token (the "Paris-------" generations seen with
  TransformerLens 4.3.0's ``bridge.generate``). A forward pre-hook on each attention bridge hands
  the cache over under the name it reads.

The bridge forces eager attention. Export goes through the ``hf`` backend (the checkpoint is loaded
again without the bridge, the edit folded into it): :func:`~jola_lens.backends.export.save_merged_hf`.

Example (a tiny random Llama saved by the test helpers):
    >>> import tempfile, torch
    >>> from jola_lens.testing import save_tiny_checkpoint
    >>> from jola_lens.backends.bridge import load_bridge_backend
    >>> m = load_bridge_backend(save_tiny_checkpoint(tempfile.mkdtemp() + "/tiny"))
    >>> m.cfg.backend, type(m.bridge).__name__
    ('bridge', 'TransformerBridge')
    >>> m.hook_dict["blocks.1.attn.hook_z"] is m.bridge.blocks[1].attn.hook_z
    True
    >>> m(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 39])
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .hf import HFHookedModel

__all__ = ["BridgeHookedModel", "bridge_available", "load_bridge_backend"]


def bridge_available() -> bool:
    """Whether this TransformerLens has ``TransformerBridge`` (3.9 and 4.x do).

    Example:
        >>> isinstance(bridge_available(), bool)
        True
    """
    try:
        from transformer_lens.model_bridge import TransformerBridge  # noqa: F401
    except ImportError:
        return False
    return True


def _hand_over_cache(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook on an attention bridge: the layer cache under the name the bridge reads."""
    if kwargs.get("past_key_values") is None:
        cache = kwargs.get("cache")
        if cache is None:
            cache = kwargs.get("past_key_value")  # transformers 4.x's per-layer name
        if cache is not None:
            kwargs["past_key_values"] = cache
    return args, kwargs


class BridgeHookedModel(HFHookedModel):
    """A TransformerBridge-wrapped HF causal LM that the editors use like a HookedTransformer.

    ``model.bridge`` is the TransformerBridge, ``model.hf`` the (wrapped) HF model; ``hook_dict`` is
    the bridge's own (TransformerLens names, aliases included), so a hook added here is a hook on
    the bridge.
    """

    def __init__(self, hf_model: Any, bridge: Any, tokenizer: Any = None, *, model_name: str | None = None,
                 checkpoint: str | None = None) -> None:
        object.__setattr__(self, "bridge", bridge)  # not a submodule: its modules are already under self.hf
        super().__init__(hf_model, tokenizer, model_name=model_name, checkpoint=checkpoint)
        self.cfg.backend = "bridge"

    def _install_hook_points(self) -> None:
        self.hook_dict = dict(self.bridge.hook_dict)
        self.mod_dict = dict(self.hook_dict)
        self.rewire()

    @property
    def blocks(self) -> Any:  # type: ignore[override]
        """The bridge's blocks (``model.blocks[l].attn.hook_z`` as on a HookedTransformer)."""
        return self.bridge.blocks

    def rewire(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for module in self.hf.modules():  # the attention bridges (the components that update a KV cache)
            if hasattr(type(module), "_update_kv_cache"):
                self._handles.append(module.register_forward_pre_hook(_hand_over_cache, with_kwargs=True))

    def run_with_cache(self, *model_args: Any, names_filter: Any = None, return_cache_object: bool = True,
                       remove_batch_dim: bool = False, **model_kwargs: Any) -> tuple[Any, Any]:
        """TransformerLens's ``run_with_cache``, keyed by the names asked for (``blocks.{l}.attn.hook_z``,
        not the bridge's canonical ``blocks.{l}.attn.o.hook_in``), on this model's forward pass."""
        from ..editors.base import attached_hooks

        if names_filter is None:
            keep = lambda name: True  # noqa: E731
        elif isinstance(names_filter, str):
            keep = lambda name: name == names_filter  # noqa: E731
        elif callable(names_filter):
            keep = names_filter
        else:
            wanted = set(names_filter)
            keep = lambda name: name in wanted  # noqa: E731
        store: dict[str, torch.Tensor] = {}

        def saver(name: str) -> Any:
            def save(t: torch.Tensor, hook: Any) -> None:
                store[name] = (t[0] if remove_batch_dim else t).detach()
            return save

        hooks = [(name, saver(name)) for name in self.hook_dict if keep(name)]
        with attached_hooks(self, hooks):
            out = self(*model_args, **model_kwargs)
        if not return_cache_object:
            return out, store
        from transformer_lens import ActivationCache

        return out, ActivationCache(store, self, has_batch_dim=not remove_batch_dim)

    def gradient_checkpointing_enable(self) -> None:
        raise NotImplementedError("gradient checkpointing is not available on the bridge backend (its blocks are "
                                  "not transformers' checkpointing layers); use backend='hf'")


def load_bridge_backend(path: str | Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                        model_name: str | None = None) -> BridgeHookedModel:
    """Load a local HF checkpoint folder, wrap it in a TransformerBridge, return :class:`BridgeHookedModel`."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager").to(device)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception:
        tok = None
    quiet = io.StringIO()
    tl_log = logging.getLogger("transformer_lens")
    level = tl_log.level
    tl_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(quiet):
            bridge = TransformerBridge.boot_transformers(str(path), hf_model=hf, tokenizer=tok, device=device,
                                                         dtype=dtype)
    finally:
        tl_log.setLevel(level)
    return BridgeHookedModel(hf, bridge, tok, model_name=model_name, checkpoint=str(path))
