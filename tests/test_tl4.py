"""TransformerLens 4.x (``make test-tl4``; skipped under 3.9, where ``make test`` runs everything else).

TL 4.0 removed ``HookedTransformer``: there ``load_model()`` gives the hf backend, asking for the hooked
one is refused with a message naming what works, and the edit is the same as under 3.9 (the
parity tests of ``tests/test_backends.py`` that need no HookedTransformer run in that environment too).
"""

from __future__ import annotations

import os

import pytest

from jola_lens.loading import ModelLoadError, hooked_available, load_model

pytestmark = pytest.mark.skipif(hooked_available(), reason="TransformerLens 3.x: make test-tl4 runs these on 4.x")


def test_transformer_lens_4_has_no_hooked_transformer():
    from importlib.metadata import version

    assert int(version("transformer-lens").split(".")[0]) >= 4
    with pytest.raises(ImportError):
        from transformer_lens import HookedTransformer  # noqa: F401


def test_default_backend_is_hf_and_hooked_is_refused_clearly(tmp_path):
    from jola_lens.testing import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "tiny")
    assert load_model(ckpt).cfg.backend == ("hf" if "JOLA_LENS_BACKEND" not in os.environ else
                                            os.environ["JOLA_LENS_BACKEND"])
    with pytest.raises(ModelLoadError, match=r"removed; use backend='bridge' .* or backend='hf'"):
        load_model(ckpt, backend="hooked")
