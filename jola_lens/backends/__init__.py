"""Backends: where an editor's hook points live.

=========  =========================================================================================
backend    model
=========  =========================================================================================
hooked     TransformerLens 3.9's ``HookedTransformer`` (weights converted; the first release's path)
bridge     TransformerLens's ``TransformerBridge`` (3.9 and 4.x) over the HF model, its own hook points
           (:mod:`.bridge`)
hf         a plain ``transformers`` causal LM, hook points on its own modules (:mod:`.hf`)
=========  =========================================================================================

``jola_lens.load_model(name_or_path, backend=...)`` picks one; every editor that uses ``hook_z``
(JoLA, LoFiT, ITI) runs on all three, with the same edit tensors giving the same logits.
"""

from __future__ import annotations

from typing import Any

BACKENDS = ("hooked", "bridge", "hf")

__all__ = ["BACKENDS", "backend_of"]


def backend_of(model: Any) -> str:
    """The backend of a model or of an editor on one: its ``cfg.backend`` (``"hf"``, ``"bridge"``), else ``"hooked"``.

    Example:
        >>> class M:
        ...     class cfg:
        ...         backend = "hf"
        >>> backend_of(M()), backend_of(object())
        ('hf', 'hooked')
    """
    m = getattr(model, "model", model) if hasattr(model, "applied") else model
    return str(getattr(getattr(m, "cfg", None), "backend", "hooked") or "hooked")
