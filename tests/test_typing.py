"""The test session checks jola_lens's jaxtyping annotations at run time.

``[tool.pytest.ini_options] addopts`` in pyproject.toml passes
``--jaxtyping-packages=jola_lens,beartype.beartype`` to jaxtyping's pytest plugin, which installs
jaxtyping's import hook before any conftest or test module is imported: every function and
dataclass of every ``jola_lens`` module is then wrapped in
``@jaxtyped(typechecker=beartype.beartype)``. These tests fail when that hook is missing (the
calls below would run unchecked and not raise the type-check error).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest
import torch
from jaxtyping import TypeCheckError

import jola_lens


def _hook_installed() -> bool:
    return any(type(f).__name__ == "_JaxtypingFinder" and "jola_lens" in getattr(f, "modules", ())
               for f in sys.meta_path)


def test_import_hook_covers_jola_lens():
    assert _hook_installed(), "jaxtyping's import hook for jola_lens is not installed (see pyproject addopts)"


def test_every_module_is_instrumented():
    names = ["jola_lens"] + [m.name for m in pkgutil.walk_packages(jola_lens.__path__, "jola_lens.")]
    plain = []
    for name in names:
        module = importlib.import_module(name)
        if getattr(module, "__file__", None) is None:  # namespace package (data folders): no code
            continue
        if type(module.__spec__.loader).__name__ != "_JaxtypingLoader":
            plain.append(name)
    assert not plain, f"imported without jaxtyping's instrumentation: {plain}"


def test_shape_mismatch_is_refused():
    from jola_lens.selection.base import top_k_mask

    scores = torch.zeros(2, 3)
    # Unchecked, this would run (both reshape to 6 values); "n_layers n_heads" must agree.
    with pytest.raises(TypeCheckError, match="tiebreak"):
        top_k_mask(scores, 1, tiebreak=torch.zeros(3, 2))
    assert int(top_k_mask(scores, 1, tiebreak=torch.zeros(2, 3)).sum()) == 1


def test_dtype_mismatch_is_refused():
    from jola_lens import gates

    with pytest.raises(TypeCheckError, match="log_alpha"):
        gates.deterministic(torch.zeros(2, 3, dtype=torch.long))


def test_dataclass_fields_are_checked():
    from jola_lens.selection.base import SelectionResult

    with pytest.raises(TypeCheckError):
        SelectionResult(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool), "demo", 0)
    with pytest.raises(TypeCheckError):  # a float mask where a Bool one is declared
        SelectionResult(torch.zeros(2, 3), torch.zeros(2, 3), "demo", 0)


def test_int_is_accepted_where_float_is_annotated():
    # beartype runs with is_pep484_tower=True: ``float`` admits an int, as for static checkers
    from jola_lens.gates import HardConcrete

    g = HardConcrete((2, 2), init="constant", init_value=3)
    assert float(g.log_alpha.detach()[0, 0]) == 3.0
