"""Tests of jola_lens.plots on a hand-built gate log, hand-made masks and a tiny saved run."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from plotly.offline import get_plotlyjs

from jola_lens import JoLAConfig, JoLAModel, plots
from jola_lens.plots import (
    accuracy_vs_size,
    gate_animation,
    gate_trajectories,
    head_heatmap,
    head_heatmap_from_model,
    jaccard,
    jaccard_matrix,
    load_final_gates,
    method_bars,
    open_count_histogram,
    save_html,
    save_png,
    selection_grid,
    write_run_figures,
)
from jola_lens.train import GateLog

STEPS = [10, 20, 30, 40, 50]
L, H = 3, 4
A_OPEN = [1, 2, 3, 4, 5]  # additive gates open at each step (by construction below)
M_OPEN = [12, 10, 8, 6, 4]  # multiplicative gates open at each step


def make_log() -> GateLog:
    """5 steps, 3 layers, 4 heads, both kinds, with known open counts and distinct quantities.

    Step s: the first ``A_OPEN[s]`` heads (flattened layer-major) have a deterministic additive
    gate of 0.5, the first ``M_OPEN[s]`` a multiplicative gate of 1.0; P(open) of head i is
    (i + 1) / 12 * (s + 1) / 5 for "a" and its mirror for "m"; the applied value is random.
    """
    g = torch.Generator().manual_seed(0)
    log = GateLog()
    log.steps = list(STEPS)
    log.lambdas = [0.1 / (s + 1) for s in range(len(STEPS))]
    flat = torch.arange(L * H, dtype=torch.float32)
    for s in range(len(STEPS)):
        a_det = torch.zeros(L * H)
        a_det[: A_OPEN[s]] = 0.5
        m_det = torch.zeros(L * H)
        m_det[: M_OPEN[s]] = 1.0
        po = (flat + 1) / (L * H) * (s + 1) / len(STEPS)
        for k, det, p in (("a", a_det, po), ("m", m_det, po.flip(0))):
            log.data.setdefault(f"{k}.value", []).append(torch.rand(L, H, generator=g))
            log.data.setdefault(f"{k}.deterministic", []).append(det.reshape(L, H))
            log.data.setdefault(f"{k}.prob_open", []).append(p.reshape(L, H))
    return log


def segments(y: np.ndarray, n_steps: int) -> list[np.ndarray]:
    """Split a NaN-separated trace back into its per-head lines (checking the separators)."""
    y = np.asarray(y, dtype=float)
    assert (len(y) + 1) % (n_steps + 1) == 0
    n = (len(y) + 1) // (n_steps + 1)
    for i in range(1, n):
        assert math.isnan(y[i * (n_steps + 1) - 1])
    return [y[i * (n_steps + 1): i * (n_steps + 1) + n_steps] for i in range(n)]


# ---- gate_trajectories ------------------------------------------------------------------------
def test_trajectories_layout_and_values():
    log = make_log()
    fig = gate_trajectories(log)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 2 * 2 * L + 2  # (value, prob_open) x (a, m) x layers + open counts
    assert all(t.type == "scatter" for t in fig.data)
    assert (len(fig._grid_ref), len(fig._grid_ref[0])) == (3, 2)  # rows: value, prob_open, counts
    fig.get_subplot(3, 2)
    with pytest.raises(ValueError):
        fig.get_subplot(4, 1)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == ["additive: gate value applied", "multiplicative: gate value applied"]
    assert titles[2:4] == ["additive: P(open)", "multiplicative: P(open)"]
    assert titles[4].startswith("additive: open gates")

    for row, col, key in ((1, 1, "a.value"), (1, 2, "m.value"), (2, 1, "a.prob_open"), (2, 2, "m.prob_open")):
        traces = list(fig.select_traces(row=row, col=col))
        assert [t.name for t in traces] == [f"layer {layer}" for layer in range(L)]
        ref = log.tensor(key).numpy()
        for layer, t in enumerate(traces):
            lines = segments(t.y, len(STEPS))
            assert len(lines) == H
            for head, line in enumerate(lines):
                np.testing.assert_allclose(line, ref[:, layer, head], rtol=1e-6)
            np.testing.assert_array_equal(np.asarray(t.x)[: len(STEPS)], STEPS)

    # one legend entry per layer, shared by every subplot
    assert sum(bool(t.showlegend) for t in fig.data if t.name.startswith("layer")) == L
    # layers get different colours from the continuous scale
    assert len({t.line.color for t in fig.select_traces(row=1, col=1)}) == L


def test_trajectories_open_counts_match_hand_computation():
    fig = gate_trajectories(make_log())
    (a_count,) = fig.select_traces(row=3, col=1)
    (m_count,) = fig.select_traces(row=3, col=2)
    assert a_count.name == "additive open" and m_count.name == "multiplicative open"
    assert list(a_count.x) == STEPS and list(m_count.x) == STEPS
    assert list(a_count.y) == A_OPEN
    assert list(m_count.y) == M_OPEN


def test_trajectories_hover_shows_layer_and_head():
    fig = gate_trajectories(make_log())
    t = list(fig.select_traces(row=2, col=1))[1]  # layer 1, P(open), additive
    assert "layer %{customdata[0]}" in t.hovertemplate and "head %{customdata[1]}" in t.hovertemplate
    cd = np.asarray(t.customdata, dtype=float)
    y = np.asarray(t.y, dtype=float)
    assert cd.shape == (len(y), 2)
    ok = ~np.isnan(y)
    assert (cd[ok, 0] == 1).all()
    assert sorted(set(cd[ok, 1].astype(int))) == list(range(H))
    assert (cd[~ok] == -1).all()


def test_trajectories_what_and_max_heads():
    log = make_log()
    fig = gate_trajectories(log, what=("deterministic",), max_heads=2)
    assert (len(fig._grid_ref), len(fig._grid_ref[0])) == (2, 2)
    # additive: heads 0..4 (flat) end at 0.5; ties broken by final P(open), which grows with the
    # flat index -> flat 4 (layer 1, head 0) and flat 3 (layer 0, head 3)
    chosen = set()
    for t in fig.select_traces(row=1, col=1):
        cd = np.asarray(t.customdata, dtype=float)
        chosen |= {(int(a), int(b)) for a, b in cd[cd[:, 0] >= 0]}
    assert chosen == {(0, 3), (1, 0)}
    n_points = sum(int((~np.isnan(np.asarray(t.y, dtype=float))).sum()) for t in fig.select_traces(row=1, col=1))
    assert n_points == 2 * len(STEPS)
    # multiplicative: flat 0..3 end open at 1.0, P(open) is mirrored -> flat 0 and 1 (layer 0)
    (m_trace,) = fig.select_traces(row=1, col=2)
    cd = np.asarray(m_trace.customdata, dtype=float)
    assert {(int(a), int(b)) for a, b in cd[cd[:, 0] >= 0]} == {(0, 0), (0, 1)}


def test_trajectories_single_kind_and_errors():
    log = make_log()
    for key in [k for k in log.data if k.startswith("m.")]:
        del log.data[key]
    fig = gate_trajectories(log)
    assert (len(fig._grid_ref), len(fig._grid_ref[0])) == (3, 1)
    assert len(fig.data) == 2 * L + 1
    with pytest.raises(ValueError, match="what"):
        gate_trajectories(log, what=("nope",))
    with pytest.raises(ValueError, match="empty"):
        gate_trajectories(GateLog())
    with pytest.raises(ValueError, match="max_heads"):
        gate_trajectories(log, max_heads=0)


# ---- head_heatmap -------------------------------------------------------------------------------
def test_head_heatmap_values_and_hover():
    ga = torch.tensor([[0.0, 0.3, 1.0, 0.0], [0.2, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.9]])
    gm = torch.zeros(L, H)
    gm[2, 1] = 0.7
    na, nm = torch.rand(L, H), torch.rand(L, H)
    fig = head_heatmap({"a": ga, "m": gm}, {"a": na, "m": nm}, title="t")
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    assert (len(fig._grid_ref), len(fig._grid_ref[0])) == (1, 2)
    np.testing.assert_allclose(fig.data[0].z, ga.numpy(), rtol=1e-6)
    np.testing.assert_allclose(fig.data[1].z, gm.numpy(), rtol=1e-6)
    assert [a.text for a in fig.layout.annotations] == ["g_a (additive): 4 open", "g_m (multiplicative): 1 open"]
    for word in ("layer", "head", "g_a", "g_m", "|a|", "|m|"):
        assert word in fig.data[0].hovertemplate
    cd = np.asarray(fig.data[0].customdata, dtype=float)
    assert cd.shape == (L, H, 4)
    np.testing.assert_allclose(cd[2, 1], [0.0, 0.7, na[2, 1], nm[2, 1]], rtol=1e-6)
    assert fig.layout.title.text == "t"
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1


def test_head_heatmap_one_kind_and_errors():
    fig = head_heatmap({"a": np.eye(3)})
    assert len(fig.data) == 1 and "|a|" not in fig.data[0].hovertemplate and "g_m" not in fig.data[0].hovertemplate
    with pytest.raises(ValueError):
        head_heatmap({"x": np.eye(3)})
    with pytest.raises(ValueError):
        head_heatmap({"a": np.eye(3), "m": np.eye(2)})


def test_head_heatmap_from_model(tiny_model):
    torch.manual_seed(0)
    jm = JoLAModel(tiny_model)
    with torch.no_grad():
        jm.edits["attn"].gate_a.log_alpha.normal_(0, 3)
    fig = head_heatmap_from_model(jm)
    np.testing.assert_allclose(fig.data[0].z, jm.gates()["a"].numpy(), rtol=1e-6)
    cd = np.asarray(fig.data[0].customdata, dtype=float)
    np.testing.assert_allclose(cd[..., 2], jm.edits["attn"].a.detach().norm(dim=-1).numpy(), rtol=1e-5)


# ---- gate_animation --------------------------------------------------------------------------
def test_animation_frames_slider_and_buttons():
    log = make_log()
    fig = gate_animation(log, kind="a", what="deterministic")
    assert len(fig.frames) == len(STEPS)
    assert [f.name for f in fig.frames] == [str(s) for s in STEPS]
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == [str(s) for s in STEPS]
    assert all(s.method == "animate" for s in slider.steps)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["Play", "Pause"]
    ref = log.tensor("a.deterministic").numpy()
    for i, fr in enumerate(fig.frames):
        assert fr.data[0].type == "heatmap"
        np.testing.assert_allclose(fr.data[0].z, ref[i])
        assert f"{A_OPEN[i]} / {L * H} open" in fr.layout.title.text
    np.testing.assert_allclose(fig.data[0].z, ref[0])
    assert "layer %{y}, head %{x}" in fig.data[0].hovertemplate


def test_animation_every_and_errors():
    log = make_log()
    assert [f.name for f in gate_animation(log, every=2).frames] == ["10", "30", "50"]
    assert [f.name for f in gate_animation(log, every=3).frames] == ["10", "40", "50"]  # last step kept
    fig = gate_animation(log, kind="m", what="prob_open")
    np.testing.assert_allclose(fig.frames[-1].data[0].z, log.tensor("m.prob_open")[-1].numpy())
    with pytest.raises(ValueError):
        gate_animation(log, kind="x")
    with pytest.raises(ValueError):
        gate_animation(log, every=0)


# ---- open_count_histogram ---------------------------------------------------------------------
def test_open_count_histogram():
    log = make_log()
    fig = open_count_histogram(log)
    assert [t.type for t in fig.data] == ["histogram"] * 4
    assert [t.name for t in fig.data] == ["step 10", "step 50"] * 2
    assert fig.layout.barmode == "overlay"
    po = log.tensor("a.prob_open").numpy()
    np.testing.assert_allclose(fig.data[0].x, po[0].ravel())
    np.testing.assert_allclose(fig.data[1].x, po[-1].ravel())
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["additive: 1 open at step 10, 5 at step 50", "multiplicative: 12 open at step 10, 4 at step 50"]


# ---- selectors ---------------------------------------------------------------------------------
def test_selection_grid_cells():
    m1 = torch.zeros(L, H, dtype=torch.bool)
    m2 = torch.zeros(L, H, dtype=torch.bool)
    m3 = torch.zeros(L, H, dtype=torch.bool)
    m1[0, 0] = m2[0, 0] = m3[0, 0] = True
    m1[1, 2] = True
    m2[1, 2] = True
    m3[2, 3] = True
    fig = selection_grid({"jola": m1, "probe": m2, "patching": m3})
    (t,) = fig.data
    assert t.type == "heatmap"
    z = np.asarray(t.z)
    assert z[0, 0] == 3 and z[1, 2] == 2 and z[2, 3] == 1 and z.sum() == 6
    text = np.asarray(t.text)
    assert text[0, 0] == "J,PR,PA" and text[1, 2] == "J,PR" and text[2, 3] == "PA" and text[2, 0] == ""
    assert np.asarray(t.customdata)[1, 2] == "jola, probe"
    assert t.zmax == 3 and t.texttemplate == "%{text}"
    assert "PA = patching (2)" in fig.layout.title.subtitle.text
    fig2 = selection_grid({"jola": m1, "probe": m2}, labels={"jola": "JL"})
    assert np.asarray(fig2.data[0].text)[0, 0] == "JL,P"
    with pytest.raises(ValueError):
        selection_grid({"a": m1, "b": torch.zeros(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError):
        selection_grid({})


def test_jaccard_values():
    a = torch.zeros(L, H, dtype=torch.bool)
    a[0, :2] = True
    b = torch.zeros(L, H, dtype=torch.bool)
    b[0, 1:3] = True
    assert jaccard(a, a) == 1.0
    assert jaccard(a, ~a) == 0.0
    assert jaccard(a, b) == pytest.approx(1 / 3)
    empty = torch.zeros(L, H, dtype=torch.bool)
    assert jaccard(empty, empty) == 1.0 and jaccard(empty, a) == 0.0
    fig = jaccard_matrix({"a": a, "a2": a.clone(), "not_a": ~a, "b": b})
    (t,) = fig.data
    z = np.asarray(t.z)
    np.testing.assert_allclose(np.diag(z), 1.0)
    assert z[0, 1] == 1.0 and z[0, 2] == 0.0 and z[0, 3] == pytest.approx(1 / 3)
    np.testing.assert_allclose(z, z.T)
    assert t.texttemplate and "z" in t.texttemplate  # cells are annotated
    assert list(t.x) == ["a (2)", "a2 (2)", "not_a (10)", "b (2)"]
    assert np.asarray(t.customdata)[0, 3].tolist() == [1, 3]


# ---- result figures ---------------------------------------------------------------------------
def test_accuracy_vs_size():
    rows = [
        {"method": "jola", "n_train": 100, "accuracy": 0.8, "stderr": 0.02},
        {"method": "jola", "n_train": 10, "accuracy": 0.5},
        {"method": "jola", "n_train": 10, "accuracy": 0.7},  # two seeds: mean 0.6, stderr 0.1
        {"method": "lora", "n_train": 10, "accuracy": 0.4},
    ]
    fig = accuracy_vs_size(rows, log_x=True)
    assert [t.name for t in fig.data] == ["jola", "lora"]
    jola, lora = fig.data
    assert list(jola.x) == [10, 100]
    np.testing.assert_allclose(jola.y, [0.6, 0.8])
    np.testing.assert_allclose(jola.error_y.array, [0.1, 0.02])
    assert jola.mode == "lines+markers" and fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == [10, 100]  # every size run is labelled
    assert lora.error_y.array is None  # no stderr anywhere: no error bars
    with pytest.raises(ValueError, match="row 0"):
        accuracy_vs_size([{"method": "x", "accuracy": 1.0}])


def test_method_bars():
    rows = [
        {"task": "boolq", "method": "jola", "accuracy": 0.7, "stderr": 0.01},
        {"task": "boolq", "method": "zero-shot", "accuracy": 0.5, "stderr": 0.02},
        {"task": "piqa", "method": "jola", "accuracy": 0.6, "stderr": 0.03},
        {"task": "piqa", "method": "lora", "accuracy": 0.65},
    ]
    fig = method_bars(rows)
    assert fig.layout.barmode == "group"
    assert [(t.type, t.name) for t in fig.data] == [("bar", "jola"), ("bar", "zero-shot"), ("bar", "lora")]
    assert list(fig.data[0].x) == ["boolq", "piqa"]
    assert list(fig.data[1].y) == [0.5, None] and list(fig.data[2].y) == [None, 0.65]
    np.testing.assert_allclose(fig.data[0].error_y.array, [0.01, 0.03])


# ---- export --------------------------------------------------------------------------------------
def test_save_html_is_offline(tmp_path):
    path = save_html(gate_animation(make_log()), tmp_path / "deep" / "anim.html")
    assert path.is_file()
    html = path.read_text(encoding="utf-8")
    assert get_plotlyjs()[:300] in html  # the plotly.js bundle is embedded
    assert 'src="https://cdn.plot.ly' not in html and "<script src=" not in html
    assert len(html) > 1_000_000


def test_save_png_works_or_explains(tmp_path):
    fig = head_heatmap({"a": np.eye(3)})
    try:
        path = save_png(fig, tmp_path / "fig.png")
    except RuntimeError as e:
        msg = str(e)
        assert 'pip install "kaleido>=1"' in msg
        assert "apt-get install chromium-headless-shell" in msg
        assert "BROWSER_PATH=/usr/bin/chromium-headless-shell" in msg
    else:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_png_error_paths(monkeypatch, tmp_path):
    fig = go.Figure()
    monkeypatch.setattr(plots, "_kaleido_version", lambda: None)
    with pytest.raises(RuntimeError, match="not installed") as e:
        save_png(fig, tmp_path / "a.png")
    assert "BROWSER_PATH=/usr/bin/chromium-headless-shell" in str(e.value)
    monkeypatch.setattr(plots, "_kaleido_version", lambda: "0.2.1")
    with pytest.raises(RuntimeError, match="too old"):
        save_png(fig, tmp_path / "a.png")

    import plotly.io as pio

    def no_chrome(*args, **kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.")

    monkeypatch.setattr(plots, "_kaleido_version", lambda: "1.0.0")
    monkeypatch.setattr(pio, "write_image", no_chrome)
    with pytest.raises(RuntimeError, match="chromium-headless-shell") as e:
        save_png(fig, tmp_path / "a.png")
    assert "Google Chrome" in str(e.value) and isinstance(e.value.__cause__, RuntimeError)


# ---- saved runs ----------------------------------------------------------------------------------
def _tiny_run(model, directory, config=None, n_log=4):
    """A JoLAModel with moving gates, its gate log recorded by GateLog.record, both saved."""
    torch.manual_seed(0)
    jm = JoLAModel(model, config)
    log = GateLog()
    for step in range(1, n_log + 1):
        with torch.no_grad():
            for gate in jm.edits["attn"].gate_modules().values():
                gate.log_alpha.add_(torch.randn_like(gate.log_alpha))
        log.record(step, 0.1 / step, jm)
    jm.save(directory)
    log.save(directory)
    return jm, log


@pytest.mark.parametrize(
    "config",
    [
        None,
        JoLAConfig(gate_mode="shared", layers=[0, 2], limits=(-0.2, 1.3)),
        JoLAConfig(gate_mode="none", edit="additive"),
    ],
    ids=["two", "shared-layers", "none-additive"],
)
def test_load_final_gates_matches_model(tiny_model, tmp_path, config):
    jm, _ = _tiny_run(tiny_model, tmp_path, config)
    gates, norms = load_final_gates(tmp_path)
    ref = jm.gates()
    assert sorted(gates) == sorted(ref)
    for k in ref:
        torch.testing.assert_close(gates[k], ref[k])
        torch.testing.assert_close(norms[k], getattr(jm.edits["attn"], k).detach().norm(dim=-1))
    with pytest.raises(ValueError, match="site"):
        load_final_gates(tmp_path, site="mlp")


def test_write_run_figures(tiny_model, tmp_path):
    run = tmp_path / "run"
    jm, log = _tiny_run(tiny_model, run)
    paths = write_run_figures(run, tmp_path / "figs")
    names = [p.name for p in paths]
    assert names == ["gate_heatmap.html", "gate_trajectories.html", "prob_open_histogram.html",
                     "gate_animation_a.html", "gate_animation_m.html"]
    for p in paths:  # the figure's data in each page, plotly.js once beside them
        assert p.parent == tmp_path / "figs" and '"data":' in p.read_text(encoding="utf-8")
    assert (tmp_path / "figs" / "plotly.min.js").stat().st_size > 1_000_000
    # default out_dir; a run without a gate log gives only the heatmap
    (run / "gate_log.json").unlink()
    (run / "gate_log.safetensors").unlink()
    assert write_run_figures(run) == [run / "figures" / "gate_heatmap.html"]
    with pytest.raises(FileNotFoundError):
        write_run_figures(tmp_path / "missing")
