"""What is scored (jola_lens.eval.target): bare models, JoLA and any other editor, hooks always removed."""

from __future__ import annotations

import contextlib

import pytest
import torch

from jola_lens import JoLAModel
from jola_lens import eval as ev
from jola_lens.eval import EditorLike, is_editor, score_continuations, score_token_continuations, scoring_target
from tests.helpers import randomize

from .helpers import CONTS, PROMPTS, chat, no_hooks_left


def test_jola_model_edits_applied_and_removed_tiny(tiny_model):
    base = score_token_continuations(tiny_model, PROMPTS, CONTS)
    jm = JoLAModel(tiny_model)
    randomize(jm)
    jm.train()  # scoring must switch to deterministic gates and restore training mode
    edited = score_token_continuations(jm, PROMPTS, CONTS)
    assert jm.training and no_hooks_left(tiny_model)
    assert max(abs(a - b) for x, y in zip(base, edited) for a, b in zip(x, y)) > 1e-2
    assert score_token_continuations(jm, PROMPTS, CONTS) == edited  # deterministic
    merged = jm.merge()  # edits folded into the weights: the same function, no hooks
    ref = score_token_continuations(merged, PROMPTS, CONTS)
    assert max(abs(a - b) for x, y in zip(ref, edited) for a, b in zip(x, y)) < 1e-4
    assert score_token_continuations(tiny_model, PROMPTS, CONTS) == base


def test_hooks_removed_on_error(tiny_model):
    jm = JoLAModel(tiny_model)
    with pytest.raises(ValueError):
        score_token_continuations(jm, [list(range(2, 70))], [[[3]]])
    assert no_hooks_left(tiny_model)


def test_prepare_model_rejects_other_objects():
    with pytest.raises(TypeError):
        ev.prepare_model(object())


class ScaleEditor:
    """A minimal editor that is not JoLA: triples the first block's output while applied."""

    def __init__(self, model):
        self.model = model
        self.training = True
        self.modes: list[bool] = []

    def train(self, mode: bool = True) -> "ScaleEditor":
        self.training = mode
        self.modes.append(mode)
        return self

    @contextlib.contextmanager
    def applied(self):
        with self.model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: 3 * x)]):
            yield self


def test_any_editor_is_scored_with_its_edits(tiny_model):
    base = score_token_continuations(tiny_model, PROMPTS, CONTS)
    ed = ScaleEditor(tiny_model)
    assert is_editor(ed) and isinstance(ed, EditorLike) and not is_editor(tiny_model)
    edited = score_token_continuations(ed, PROMPTS, CONTS)
    assert max(abs(a - b) for x, y in zip(base, edited) for a, b in zip(x, y)) > 1e-3
    assert ed.training and ed.modes == [False, True]  # eval mode while scored, then restored
    assert no_hooks_left(tiny_model)
    assert score_token_continuations(tiny_model, PROMPTS, CONTS) == base


def test_scoring_target_contexts_and_old_names(tiny_model):
    class Bare:  # ``.model`` and ``.applied()`` only: still an editor
        model = tiny_model
        applied = staticmethod(contextlib.nullcontext)

    hooked, ctx = scoring_target(Bare())
    with ctx:
        assert hooked is tiny_model and torch.is_inference_mode_enabled()
    hooked, ctx = scoring_target(tiny_model)
    with ctx:
        assert hooked is tiny_model and torch.is_inference_mode_enabled()
    assert isinstance(JoLAModel(tiny_model), EditorLike) and not isinstance(tiny_model, EditorLike)
    assert ev.prepare_model is scoring_target and ev.is_edit_wrapper is is_editor


# ---- the bundled SmolLM2 ------------------------------------------------------------------------


@pytest.mark.integration
def test_jola_scoring_on_bundled_model(smollm):
    tok = smollm.tokenizer
    prompts = [chat(tok, "Is water wet? Answer format: true/false")]
    base = score_continuations(smollm, prompts, [["true", "false"]])
    jm = JoLAModel(smollm)
    randomize(jm)
    edited = score_continuations(jm, prompts, [["true", "false"]])
    assert no_hooks_left(smollm)
    assert max(abs(a - b) for a, b in zip(base[0], edited[0])) > 1e-2
    assert score_continuations(smollm, prompts, [["true", "false"]]) == base
