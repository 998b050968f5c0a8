"""The one saved-run format, and the formats the first release wrote (they still load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from jola_lens.cli import read_run_heads
from jola_lens.editors import EditorLoadError, JoLAModel, get_editor, load_editor, model_identity
from jola_lens.editors.io import CONFIG_FILE, EDITS_FILE, read_run

REPO = Path(__file__).resolve().parents[2]


def _randomize(ed, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ed.edit_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_format_fields(tiny_model, tmp_path):
    ed = get_editor(tiny_model, "lora", rank=2)
    ed.save(tmp_path, extra={"train_config": {"lr": 1.0}})
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["format"] == 2 and meta["editor"] == "lora" and meta["config"]["rank"] == 2
    assert meta["model"] == model_identity(tiny_model)
    assert set(meta["versions"]) == {"jola_lens", "transformer_lens", "torch"}
    assert meta["tensors"]["A_q"] == list(ed.A_q.shape) and len(meta["sha256"]) == 64
    assert meta["extra"]["train_config"]["lr"] == 1.0


def test_first_release_jola_format_loads(tiny_model, tokens, tmp_path):
    jm = JoLAModel(tiny_model).eval()
    _randomize(jm)
    jm.save(tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    old = {k: meta[k] for k in ("library", "library_version", "transformer_lens_version", "torch_version", "model",
                                "hook_sites", "jola_config", "tensors")}
    old["format"] = 1  # what JoLAModel.save wrote before editors existed: no editor, config, sha256
    (tmp_path / CONFIG_FILE).write_text(json.dumps(old))
    back = load_editor(tmp_path, tiny_model)
    assert isinstance(back, JoLAModel) and not back.training
    assert read_run(tmp_path).format == 1
    assert torch.equal(back(tokens), jm(tokens))


@pytest.mark.parametrize("name,options", [("lora", {"rank": 2}), ("red", {}), ("lofit", {"k": 3})])
def test_former_baseline_layout_loads(tiny_model, tokens, tmp_path, name, options):
    ed = get_editor(tiny_model, name, **options).eval()
    _randomize(ed)
    if name == "lofit":
        mask = torch.zeros(3, 4, dtype=torch.bool)
        mask[0, 1] = mask[2, 3] = mask[1, 0] = True
        ed.edit.set_head_mask(mask)
    # the layout EditBaseline.save wrote: baseline.safetensors + baseline.json with "settings"
    save_file({k: v.contiguous() for k, v in ed.edit_state().items()}, str(tmp_path / "baseline.safetensors"))
    (tmp_path / "baseline.json").write_text(json.dumps({"baseline": name, "settings": ed.settings,
                                                        "model": model_identity(tiny_model),
                                                        "trainable_params": ed.n_trainable_parameters()}))
    back = load_editor(tmp_path, tiny_model)
    assert type(back) is type(ed) and read_run(tmp_path).format == 0
    assert torch.equal(back(tokens), ed(tokens))


def test_flipped_bytes_in_the_data_are_detected(tiny_model, tmp_path):
    ed = get_editor(tiny_model, "red")
    ed.save(tmp_path)
    data = bytearray((tmp_path / EDITS_FILE).read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data, not the header: safetensors alone would load it
    (tmp_path / EDITS_FILE).write_bytes(bytes(data))
    with pytest.raises(EditorLoadError, match="corrupted"):
        load_editor(tmp_path, tiny_model)


def test_load_into_the_wrong_class_is_refused(tiny_model, tmp_path):
    get_editor(tiny_model, "red").save(tmp_path)
    with pytest.raises(EditorLoadError, match="'red' run, not 'jola'"):
        JoLAModel.load(tmp_path, tiny_model)


def test_heads_table_for_editors_with_heads(tiny_model, tmp_path):
    lofit = get_editor(tiny_model, "lofit", k=2)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, 2] = mask[0, 0] = True
    lofit.edit.set_head_mask(mask)
    lofit.save(tmp_path / "lofit")
    rows = read_run_heads(tmp_path / "lofit")
    assert {(r["layer"], r["head"]) for r in rows if r["g_a"] > 0} == {(1, 2), (0, 0)}
    get_editor(tiny_model, "lora", rank=2).save(tmp_path / "lora")
    with pytest.raises(ValueError, match="no particular attention heads"):
        read_run_heads(tmp_path / "lora")


@pytest.mark.integration
def test_every_stored_run_folder_loads_onto_the_bundled_model(smollm, tokens):
    folders = sorted(p.parent for p in (REPO / "analysis" / "results").rglob(CONFIG_FILE))
    assert folders, "no stored run folder under analysis/results"
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    for d in folders:
        ed = load_editor(d, smollm)
        assert not ed.training
        a, b = ed(ids), ed(ids)
        assert torch.equal(a, b), f"{d}: two eval passes differ"
        assert read_run_heads(d)
