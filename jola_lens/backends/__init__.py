"""Backends: where an editor's hook points live.

=========  =========================================================================================
backend    model
=========  =========================================================================================
hooked     TransformerLens 3.9's ``HookedTransformer`` (weights converted; the first release's path)
hf         a plain ``transformers`` causal LM, hook points on its own modules (:mod:`.hf`)
=========  =========================================================================================

``jola_lens.load_model(name_or_path, backend=...)`` picks one; every editor that uses ``hook_z``
(JoLA, LoFiT, ITI) runs on both, with the same edit tensors giving the same logits.
"""

from __future__ import annotations

from typing import Any

BACKENDS = ("hooked", "hf")

__all__ = ["BACKENDS", "backend_of"]


def backend_of(model: Any) -> str:
    """``"hf"`` for an :class:`~jola_lens.backends.hf.HFHookedModel` (or an editor on one), else ``"hooked"``.

    Example:
        >>> class M:
        ...     class cfg:
        ...         backend = "hf"
        >>> backend_of(M()), backend_of(object())
        ('hf', 'hooked')
    """
    m = getattr(model, "model", model) if hasattr(model, "applied") else model
    return str(getattr(getattr(m, "cfg", None), "backend", "hooked") or "hooked")
