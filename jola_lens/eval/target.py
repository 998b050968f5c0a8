"""What evaluation scores: a bare HookedTransformer, or an editor whose edits are applied while it runs.

:func:`scoring_target` is the one rule. Anything with a ``.model`` attribute and an ``.applied()``
context manager is an edit wrapper (:class:`EditorLike`: :class:`~jola_lens.JoLAModel` and every
baseline editor): the HookedTransformer to call is its ``.model``, and while the returned context
is open the edits are attached, in eval mode (deterministic gates). Anything else is a bare model,
called as it is. Both contexts run under ``torch.inference_mode()`` (``torch.no_grad()`` on an FSDP-sharded base).

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
    ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS")
    >>> bare = HookedTransformer(cfg)
    >>> hooked, ctx = scoring_target(bare)
    >>> hooked is bare, is_editor(bare)
    (True, False)
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterator, Protocol, Union, runtime_checkable

from ..backends.hf import HFHookedModel

try:  # TransformerLens 3.x; 4.x removed it (the hf backend works there)
    from transformer_lens import HookedTransformer
except ImportError:  # pragma: no cover - exercised by make test-tl4
    HookedTransformer = HFHookedModel  # type: ignore[misc,assignment]

__all__ = ["EditorLike", "ModelLike", "applied_model", "base_model", "is_edit_wrapper", "is_editor", "prepare_model",
           "prepends_bos", "scoring_target"]


def is_editor(model: Any) -> bool:
    """True for an edit wrapper: an object with a ``.model`` attribute and a callable ``.applied``.

    :class:`~jola_lens.JoLAModel` and every editor of :mod:`jola_lens.baselines` are; a
    HookedTransformer (bare, or with JoLA's edits merged into its weights) is not.

    Example:
        >>> import contextlib
        >>> class Wrapper:
        ...     model = None
        ...     applied = contextlib.nullcontext
        >>> is_editor(Wrapper()), is_editor(object())
        (True, False)
    """
    return hasattr(model, "model") and callable(getattr(model, "applied", None))


#: The first release's name of :func:`is_editor`.
is_edit_wrapper = is_editor


class _EditorLikeMeta(type(Protocol)):  # type: ignore[misc]
    """``isinstance(x, EditorLike)`` is :func:`is_editor` (a plain lookup, which also finds the
    ``model`` submodule of an ``nn.Module``, where a protocol's static attribute check would not)."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return is_editor(obj)


@runtime_checkable
class EditorLike(Protocol, metaclass=_EditorLikeMeta):
    """Any editor: ``model`` (the HookedTransformer it edits) and ``applied()`` (a context manager
    that attaches the edits while it is open). JoLA and every baseline have both.

    Example:
        >>> import contextlib
        >>> class Wrapper:
        ...     model = None
        ...     applied = contextlib.nullcontext
        >>> isinstance(Wrapper(), EditorLike), isinstance(object(), EditorLike)
        (True, False)
    """

    model: Any

    def applied(self) -> ContextManager[Any]:
        """Attach the edits to ``model`` while the context is open."""
        ...


#: What the evaluation functions take: a bare HookedTransformer, a model of the hf backend, or any editor.
ModelLike = Union[HookedTransformer, HFHookedModel, EditorLike]
#: A model of one backend (what an editor's ``.model`` is).
BaseModel = Union[HookedTransformer, HFHookedModel]


def scoring_target(model: ModelLike) -> tuple[BaseModel, ContextManager[BaseModel]]:
    """The HookedTransformer to call for ``model``, and a context that makes it ready.

    An editor (:func:`is_editor`) gives its ``.model``; its context switches the editor to eval
    mode (deterministic gates), attaches the edits, enters ``torch.inference_mode()``, and on exit
    removes the edits and restores the previous training mode. A bare model is called as it is,
    its context only enters ``torch.inference_mode()``.

    Raises:
        TypeError: ``model`` is neither an editor nor a HookedTransformer.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens import JoLAModel
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
        ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS")
        >>> jm = JoLAModel(HookedTransformer(cfg)).train()
        >>> hooked, ctx = scoring_target(jm)
        >>> with ctx:
        ...     (jm.training, len(hooked.blocks[0].attn.hook_z.fwd_hooks))
        (False, 1)
        >>> (jm.training, len(hooked.blocks[0].attn.hook_z.fwd_hooks))
        (True, 0)
    """
    if is_editor(model):
        return model.model, _editor_context(model)
    if not hasattr(model, "cfg") or not hasattr(model, "hook_dict"):
        raise TypeError(
            f"expected a HookedTransformer or an editor (.model and .applied()), got {type(model).__name__}"
        )
    return model, _plain_context(model)


#: The first release's name of :func:`scoring_target`.
prepare_model = scoring_target


@contextlib.contextmanager
def _plain_context(model: Any) -> Iterator[Any]:
    from ..distributed import no_grad_context

    with no_grad_context(model):
        yield model


@contextlib.contextmanager
def _editor_context(editor: Any) -> Iterator[Any]:
    was_training = getattr(editor, "training", None)
    switch = isinstance(was_training, bool) and callable(getattr(editor, "train", None))
    if switch:
        editor.train(False)
    from ..distributed import no_grad_context

    try:
        with editor.applied(), no_grad_context(editor.model):
            yield editor.model
    finally:
        if switch:
            editor.train(was_training)


#: The first release's private name of the editor context.
_jola_context = _editor_context


@contextlib.contextmanager
def applied_model(model: ModelLike) -> Iterator[Any]:
    """``with applied_model(m) as hooked:`` -- :func:`scoring_target` as one context manager.

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2,
        ...                               d_vocab=11, act_fn="gelu", normalization_type="RMS")
        >>> with applied_model(HookedTransformer(cfg)) as hooked:
        ...     torch.is_inference_mode_enabled()
        True
    """
    hooked, ctx = scoring_target(model)
    with ctx:
        yield hooked


def base_model(model: ModelLike) -> Any:
    """The HookedTransformer under an editor, or ``model`` itself when it is not one."""
    return model.model if is_editor(model) else model


#: the former private name of :func:`base_model`
_hooked = base_model


def prepends_bos(model: ModelLike) -> bool:
    """Whether prompts for ``model`` (or the model under an editor) start with a BOS token: its
    config's ``default_prepend_bos`` (False when the config does not say)."""
    return bool(getattr(base_model(model).cfg, "default_prepend_bos", False))
