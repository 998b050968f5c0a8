"""Plotly figures for JoLA runs: gate trajectories, head maps, selector comparisons, results.

Every function returns a :class:`plotly.graph_objects.Figure` and never shows it: call
``fig.show()`` in a notebook, or write it with :func:`save_html` (self-contained, works
offline) or :func:`save_png` (needs kaleido and a headless Chromium).

Inputs are the objects the rest of the package produces:

* a :class:`~jola_lens.train.GateLog` (per-step ``[steps, n_layers, n_heads]`` gate tensors)
  for :func:`gate_trajectories`, :func:`gate_animation` and :func:`open_count_histogram`;
* final gate tensors (``{"a": g_a, "m": g_m}``, ``[n_layers, n_heads]``) for
  :func:`head_heatmap` (or a :class:`~jola_lens.JoLAModel` for :func:`head_heatmap_from_model`,
  or a saved run directory for :func:`load_final_gates`);
* boolean head masks per selector for :func:`selection_grid` and :func:`jaccard_matrix`;
* result rows (dicts) for :func:`accuracy_vs_size` and :func:`method_bars`.

:func:`write_run_figures` turns a saved run directory into a folder of HTML figures.
:func:`demo_gate_log` builds a synthetic gate log for demos and tests.

Example:
    >>> from jola_lens.plots import demo_gate_log, gate_trajectories
    >>> fig = gate_trajectories(demo_gate_log(n_steps=6, n_layers=2, n_heads=3))
    >>> type(fig).__name__
    'Figure'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Union

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots
from torch import Tensor

from .gates import deterministic as _deterministic_gate
from .gates import prob_open as _prob_open
from .gates import sample as _sample_gate
from .train import GateLog

__all__ = [
    "PNG_EXPORT_HELP",
    "accuracy_vs_size",
    "demo_gate_log",
    "gate_animation",
    "gate_trajectories",
    "head_heatmap",
    "head_heatmap_from_model",
    "jaccard",
    "jaccard_matrix",
    "load_final_gates",
    "method_bars",
    "open_count_histogram",
    "save_html",
    "save_png",
    "selection_grid",
    "write_run_figures",
]

ArrayLike = Union[Tensor, np.ndarray, Sequence[Any]]

KINDS = ("a", "m")
KIND_NAMES = GateLog.KIND_NAMES  # {"a": "additive", "m": "multiplicative"}
WHATS = {"value": "gate value applied", "deterministic": "deterministic gate", "prob_open": "P(open)"}
KIND_COLOURS = {"a": "#1f77b4", "m": "#d62728"}

PNG_EXPORT_HELP = (
    "PNG export needs kaleido >= 1 and a headless Chrome/Chromium. To get it:\n"
    '    pip install "kaleido>=1"\n'
    "and a browser for kaleido, e.g. on Debian/Ubuntu:\n"
    "    apt-get install chromium-headless-shell\n"
    "    export BROWSER_PATH=/usr/bin/chromium-headless-shell\n"
    "(or let kaleido download Chrome with `plotly_get_chrome`). "
    "save_html needs none of this: its files are self-contained and open offline."
)


# ---- small helpers ---------------------------------------------------------------------------
def _np(x: ArrayLike) -> np.ndarray:
    """A float64 / bool numpy copy of a tensor, array or nested list."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return x.numpy().copy() if x.dtype == torch.bool else x.double().numpy()
    arr = np.asarray(x)
    return arr.astype(bool) if arr.dtype == bool else arr.astype(float)


def _log_kinds(log: GateLog) -> list[str]:
    present = {key.split(".")[0] for key in log.data}
    return [k for k in KINDS if k in present]


def _log_array(log: GateLog, key: str) -> np.ndarray:
    if key not in log.data:
        raise KeyError(f"the gate log has no {key!r} (it holds {sorted(log.data)})")
    return _np(log.tensor(key))


def _check_log(log: GateLog) -> list[str]:
    kinds = _log_kinds(log)
    if not log.steps or not kinds:
        raise ValueError("the gate log is empty: train with log_gates_every >= 1 (or record steps) first")
    return kinds


def _layer_colours(n_layers: int, colorscale: str) -> list[str]:
    points = [0.5] if n_layers == 1 else [i / (n_layers - 1) for i in range(n_layers)]
    return sample_colorscale(colorscale, points)


def _check_what(what: str) -> None:
    if what not in WHATS:
        raise ValueError(f"what must be one of {sorted(WHATS)}, got {what!r}")


def _select_heads(det_last: np.ndarray, po_last: np.ndarray, max_heads: int | None) -> list[np.ndarray]:
    """Per layer, the heads to draw: all, or the ``max_heads`` with the largest final gates."""
    n_layers, n_heads = det_last.shape
    if max_heads is None or max_heads >= n_layers * n_heads:
        return [np.arange(n_heads) for _ in range(n_layers)]
    # rank by the final deterministic gate, then the final P(open); ties by (layer, head)
    order = np.lexsort((-po_last.ravel(), -det_last.ravel()))[:max_heads]
    chosen: list[list[int]] = [[] for _ in range(n_layers)]
    for flat in sorted(order.tolist()):
        chosen[flat // n_heads].append(flat % n_heads)
    return [np.asarray(c, dtype=int) for c in chosen]


def _separated_lines(
    values: np.ndarray, steps: np.ndarray, layer: int, heads: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, customdata for one trace holding several heads' lines, separated by NaN in y.

    ``values`` is ``[steps, n_layers, n_heads]``; customdata rows are ``(layer, head)``, and
    ``(-1, -1)`` at the separators. float32 / int16 keep the figure JSON small.
    """
    n_steps, n = len(steps), len(heads)
    x = np.empty((n, n_steps + 1), dtype=np.float32)
    y = np.full((n, n_steps + 1), np.nan, dtype=np.float32)
    cd = np.full((n, n_steps + 1, 2), -1, dtype=np.int16)
    x[:, :n_steps] = steps[None, :]
    x[:, n_steps] = steps[-1]  # the gap comes from y alone
    y[:, :n_steps] = values[:, layer, heads].T
    cd[:, :n_steps, 0] = layer
    cd[:, :n_steps, 1] = heads[:, None]
    return x.ravel()[:-1], y.ravel()[:-1], cd.reshape(-1, 2)[:-1]


def _grid_axes(fig: go.Figure, n_layers: int, n_heads: int, rows: int = 1, cols: int = 1) -> None:
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            fig.update_xaxes(title_text="head", dtick=1 if n_heads <= 40 else None, row=r, col=c)
            fig.update_yaxes(title_text="layer", dtick=1 if n_layers <= 40 else None, row=r, col=c)


# ---- synthetic data --------------------------------------------------------------------------
def demo_gate_log(
    n_steps: int = 20,
    n_layers: int = 4,
    n_heads: int = 6,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    open_fraction: float = 0.25,
) -> GateLog:
    """A synthetic :class:`GateLog`: log-alphas drift from a JoLA-like init to open or closed.

    Each gate's log-alpha moves linearly from Xavier-uniform noise to +4 (for about
    ``open_fraction`` of the heads) or -4; the log holds the sampled ``value``, the
    ``deterministic`` gate and ``prob_open`` at steps ``1..n_steps``.

    Example:
        >>> log = demo_gate_log(n_steps=5, n_layers=3, n_heads=4)
        >>> log.steps
        [1, 2, 3, 4, 5]
        >>> tuple(log.tensor("a.prob_open").shape)
        (5, 3, 4)
    """
    if n_steps < 1 or n_layers < 1 or n_heads < 1:
        raise ValueError("n_steps, n_layers and n_heads must be >= 1")
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {tuple(kinds)}")
    g = torch.Generator().manual_seed(seed)
    log = GateLog()
    log.steps = list(range(1, n_steps + 1))
    log.lambdas = [0.1 * math.exp(-0.01 * s) for s in log.steps]
    bound = math.sqrt(6.0 / (n_heads + 1))
    for k in kinds:
        start = (torch.rand(n_layers, n_heads, generator=g) * 2 - 1) * bound
        target = torch.where(torch.rand(n_layers, n_heads, generator=g) < open_fraction, 4.0, -4.0)
        for i in range(n_steps):
            la = start + (target - start) * (i / max(n_steps - 1, 1))
            log.data.setdefault(f"{k}.value", []).append(_sample_gate(la, generator=g))
            log.data.setdefault(f"{k}.deterministic", []).append(_deterministic_gate(la))
            log.data.setdefault(f"{k}.prob_open", []).append(_prob_open(la))
    return log


# ---- 1. gate trajectories --------------------------------------------------------------------
def gate_trajectories(
    log: GateLog,
    *,
    what: Sequence[str] = ("value", "prob_open"),
    max_heads: int | None = None,
    colorscale: str = "Viridis",
    title: str | None = None,
) -> go.Figure:
    """Per-head gate lines over training steps, coloured by layer, plus the open-gate count.

    Subplots: one row per entry of ``what`` (``"value"``: the gate the forward pass used,
    sampled in training; ``"deterministic"``; ``"prob_open"``: P(gate != 0)), one column per
    edit kind (additive, multiplicative), and a bottom row with the number of open gates
    (deterministic value > 0) at each step. Each (quantity, kind, layer) is one trace whose
    heads are separated by NaN gaps, so 30 layers x 9 heads stay fast; hovering a line shows
    its layer and head. Clicking a layer in the legend toggles it in every subplot.

    Args:
        log: the gate log of a run.
        what: the quantities to draw, one row each.
        max_heads: draw only this many heads per kind: those with the largest final
            deterministic gate (then final P(open)). ``None``: every head.
        colorscale: a plotly continuous colour scale, sampled at each layer index.
        title: figure title.

    Example:
        >>> log = demo_gate_log(n_steps=5, n_layers=3, n_heads=4)
        >>> fig = gate_trajectories(log)
        >>> len(fig.data)  # 2 quantities x 2 kinds x 3 layers + one open-count line per kind
        14
        >>> [t.name for t in fig.data if t.name.endswith("open")]
        ['additive open', 'multiplicative open']
    """
    kinds = _check_log(log)
    what = list(what)
    if not what:
        raise ValueError("what must name at least one quantity")
    for w in what:
        _check_what(w)
    if max_heads is not None and max_heads < 1:
        raise ValueError(f"max_heads must be >= 1 or None, got {max_heads}")
    steps = np.asarray(log.steps, dtype=float)
    n_rows, n_cols = len(what) + 1, len(kinds)
    titles = [f"{KIND_NAMES[k]}: {WHATS[w]}" for w in what for k in kinds]
    titles += [f"{KIND_NAMES[k]}: open gates (deterministic > 0)" for k in kinds]
    fig = make_subplots(rows=n_rows, cols=n_cols, shared_xaxes=True, subplot_titles=titles,
                        vertical_spacing=min(0.08, 0.3 / n_rows), horizontal_spacing=0.08)
    legend_done: set[int] = set()
    for c, k in enumerate(kinds, start=1):
        det = _log_array(log, f"{k}.deterministic")
        n_layers, n_heads = det.shape[1:]
        colours = _layer_colours(n_layers, colorscale)
        last_po = _log_array(log, f"{k}.prob_open")[-1] if max_heads is not None else det[-1]
        heads_per_layer = _select_heads(det[-1], last_po, max_heads)
        for r, w in enumerate(what, start=1):
            values = det if w == "deterministic" else _log_array(log, f"{k}.{w}")
            for layer in range(n_layers):
                heads = heads_per_layer[layer]
                if len(heads) == 0:
                    continue
                x, y, cd = _separated_lines(values, steps, layer, heads)
                fig.add_trace(
                    go.Scatter(
                        x=x, y=y, customdata=cd, mode="lines",
                        line=dict(color=colours[layer], width=1),
                        name=f"layer {layer}", legendgroup=f"layer {layer}",
                        showlegend=layer not in legend_done,
                        hovertemplate=(f"layer %{{customdata[0]}}, head %{{customdata[1]}}<br>step %{{x}}"
                                       f"<br>{WHATS[w]} %{{y:.3f}}<extra>{KIND_NAMES[k]}</extra>"),
                    ),
                    row=r, col=c,
                )
                legend_done.add(layer)
            fig.update_yaxes(title_text=WHATS[w] if c == 1 else None, range=[-0.03, 1.03], row=r, col=c)
        counts = (det > 0).sum(axis=(1, 2))
        fig.add_trace(
            go.Scatter(
                x=steps, y=counts, customdata=np.asarray(log.lambdas, dtype=float), mode="lines+markers",
                line=dict(color=KIND_COLOURS[k], width=2), marker=dict(size=4),
                name=f"{KIND_NAMES[k]} open", legendgroup=f"open {k}",
                hovertemplate=f"step %{{x}}<br>open %{{y}} / {n_layers * n_heads}"
                              f"<br>lambda %{{customdata:.3g}}<extra>{KIND_NAMES[k]}</extra>",
            ),
            row=n_rows, col=c,
        )
        fig.update_yaxes(title_text="open gates" if c == 1 else None, range=[-0.5, n_layers * n_heads + 0.5],
                         row=n_rows, col=c)
        fig.update_xaxes(title_text="step", row=n_rows, col=c)
    fig.update_layout(
        title_text=title or "JoLA gates during training",
        height=260 * n_rows + 80, width=max(700, 520 * n_cols),
        hovermode="closest", legend=dict(title_text="layer", tracegroupgap=0),
    )
    return fig


# ---- 2. final gates per head -----------------------------------------------------------------
def head_heatmap(
    gates: Mapping[str, ArrayLike],
    norms: Mapping[str, ArrayLike] | None = None,
    *,
    title: str | None = None,
    colorscale: str = "Viridis",
) -> go.Figure:
    """Layer x head heatmaps of the final gates, additive and multiplicative side by side.

    Args:
        gates: ``{"a": g_a, "m": g_m}`` (either key may be missing), each ``[n_layers, n_heads]``,
            e.g. ``JoLAModel.gates()`` or :func:`load_final_gates`.
        norms: optional ``{"a": |a|, "m": |m|}`` edit-vector norms, ``[n_layers, n_heads]``.
        title: figure title.
        colorscale: colour scale of the gate value (0..1, shared by both maps).

    Hovering a cell shows its layer, head, g_a, g_m and (given ``norms``) |a| and |m|.
    Layer 0 is at the bottom.

    Example:
        >>> import torch
        >>> g = {"a": torch.tensor([[0.0, 1.0], [0.5, 0.0]]), "m": torch.zeros(2, 2)}
        >>> fig = head_heatmap(g, {"a": torch.ones(2, 2), "m": torch.ones(2, 2)})
        >>> [t.type for t in fig.data]
        ['heatmap', 'heatmap']
        >>> fig.layout.annotations[0].text
        'g_a (additive): 2 open'
    """
    kinds = [k for k in KINDS if k in gates]
    unknown = sorted(set(gates) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"gates must be keyed by 'a' and/or 'm', got {sorted(gates)}")
    arrays = {k: _np(gates[k]) for k in kinds}
    shape = arrays[kinds[0]].shape
    norm_arrays = {k: _np(v) for k, v in (norms or {}).items() if k in KINDS}
    for name, a in [*arrays.items(), *norm_arrays.items()]:
        if a.shape != shape or len(shape) != 2:
            raise ValueError(f"every gate / norm tensor must be [n_layers, n_heads]; {name!r} has {a.shape}, "
                             f"expected {shape}")
    n_layers, n_heads = shape
    nan = np.full(shape, np.nan)
    custom = np.stack([arrays.get("a", nan), arrays.get("m", nan),
                       norm_arrays.get("a", nan), norm_arrays.get("m", nan)], axis=-1)
    parts = ["layer %{y}, head %{x}"]
    parts += [f"g_{k} %{{customdata[{i}]:.3f}}" for i, k in enumerate(KINDS) if k in arrays]
    parts += [f"|{k}| %{{customdata[{2 + i}]:.3g}}" for i, k in enumerate(KINDS) if k in norm_arrays]
    hover = "<br>".join(parts) + "<extra></extra>"
    titles = [f"g_{k} ({KIND_NAMES[k]}): {int((arrays[k] > 0).sum())} open" for k in kinds]
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=titles, horizontal_spacing=0.08)
    for c, k in enumerate(kinds, start=1):
        fig.add_trace(
            go.Heatmap(z=arrays[k], x=list(range(n_heads)), y=list(range(n_layers)), customdata=custom,
                       coloraxis="coloraxis", hovertemplate=hover, name=f"g_{k}", xgap=1, ygap=1),
            row=1, col=c,
        )
    _grid_axes(fig, n_layers, n_heads, cols=len(kinds))
    fig.update_layout(
        title_text=title or "Final JoLA gates per head",
        coloraxis=dict(colorscale=colorscale, cmin=0.0, cmax=1.0, colorbar=dict(title=dict(text="gate"))),
        height=max(350, 22 * n_layers + 160), width=max(600, len(kinds) * (30 * n_heads + 250)),
    )
    return fig


def head_heatmap_from_model(jola: Any, site: str = "attn", *, title: str | None = None) -> go.Figure:
    """:func:`head_heatmap` of a :class:`~jola_lens.JoLAModel`'s current deterministic gates and edit norms.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens import JoLAModel
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4,
        ...                               d_vocab=20, act_fn="gelu")
        >>> fig = head_heatmap_from_model(JoLAModel(HookedTransformer(cfg)))
        >>> fig.data[0].z.shape
        (2, 4)
    """
    edit = jola.edits[site]
    gates = {k: v.detach().cpu() for k, v in jola.gates(site).items()}
    with torch.no_grad():
        norms = {k: getattr(edit, k).detach().float().norm(dim=-1).cpu() for k in edit.kinds()}
    return head_heatmap(gates, norms, title=title)


def load_final_gates(
    run_dir: str | Path, site: str = "attn"
) -> tuple[dict[str, Float[Tensor, "n_layers n_heads"]], dict[str, Float[Tensor, "n_layers n_heads"]]]:
    """Final deterministic gates and edit norms of a saved run, without loading a model.

    Reads ``edits.safetensors`` and ``jola_config.json`` (written by ``JoLAModel.save``):
    gate = clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1) with the saved limits,
    times the saved head mask (a shared gate serves both kinds; without gates the value is the
    mask); norms are ``|a|`` and ``|m|`` per head.

    Returns:
        ``(gates, norms)``, each ``{"a": ..., "m": ...}`` for the kinds the run edits.

    Example:
        >>> import tempfile
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens import JoLAModel
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4,
        ...                               d_vocab=20, act_fn="gelu")
        >>> jola = JoLAModel(HookedTransformer(cfg))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = jola.save(d)
        ...     gates, norms = load_final_gates(d)
        >>> bool(torch.allclose(gates["a"], jola.gates()["a"]))
        True
    """
    from .editors.io import CONFIG_FILE, EDITS_FILE, is_run_folder, read_run
    from .editors.jola import saved_head_gates

    d = Path(run_dir)
    if not is_run_folder(d):
        raise FileNotFoundError(f"{d / CONFIG_FILE} not found: a saved JoLA run holds {CONFIG_FILE} and {EDITS_FILE}")
    return saved_head_gates(read_run(d), site)


# ---- 3. animation ----------------------------------------------------------------------------
def gate_animation(
    log: GateLog,
    kind: str = "a",
    what: str = "deterministic",
    every: int = 1,
    *,
    colorscale: str = "Viridis",
    title: str | None = None,
) -> go.Figure:
    """An animated layer x head heatmap of one gate quantity, with a step slider and Play/Pause.

    Args:
        log: the gate log of a run.
        kind: ``"a"`` (additive) or ``"m"`` (multiplicative).
        what: ``"deterministic"``, ``"value"`` or ``"prob_open"``.
        every: one frame every ``every`` logged steps (the last logged step is always a frame).
        colorscale: colour scale (fixed to 0..1 across frames).
        title: title prefix; each frame's title adds its step, lambda and open-gate count.

    Example:
        >>> fig = gate_animation(demo_gate_log(n_steps=5, n_layers=3, n_heads=4))
        >>> len(fig.frames), len(fig.layout.sliders[0].steps)
        (5, 5)
        >>> len(gate_animation(demo_gate_log(n_steps=6), every=2).frames)  # steps 1, 3, 5 and 6
        4
    """
    kinds = _check_log(log)
    if kind not in kinds:
        raise ValueError(f"kind must be one of the logged kinds {kinds}, got {kind!r}")
    _check_what(what)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    values = _log_array(log, f"{kind}.{what}")
    det = _log_array(log, f"{kind}.deterministic")
    n_steps, n_layers, n_heads = values.shape
    idx = list(range(0, n_steps, every))
    if idx[-1] != n_steps - 1:
        idx.append(n_steps - 1)
    names = [str(log.steps[i]) for i in idx]
    if len(set(names)) != len(names):  # repeated step numbers (e.g. a resumed run): keep names unique
        names = [f"{n}#{j}" for j, n in enumerate(names)]
    head = title or f"{KIND_NAMES[kind]} gates: {WHATS[what]}"

    def frame_title(i: int) -> str:
        return (f"{head} | step {log.steps[i]}, lambda {log.lambdas[i]:.3g}, "
                f"{int((det[i] > 0).sum())} / {n_layers * n_heads} open")

    hover = f"layer %{{y}}, head %{{x}}<br>{WHATS[what]} %{{z:.3f}}<extra></extra>"

    def heatmap(i: int) -> go.Heatmap:
        return go.Heatmap(z=values[i], x=list(range(n_heads)), y=list(range(n_layers)), zmin=0.0, zmax=1.0,
                          colorscale=colorscale, hovertemplate=hover, xgap=1, ygap=1,
                          colorbar=dict(title=dict(text=WHATS[what])))

    frames = [go.Frame(name=name, data=[heatmap(i)], traces=[0], layout=go.Layout(title_text=frame_title(i)))
              for i, name in zip(idx, names)]
    fig = go.Figure(data=[heatmap(idx[0])], frames=frames)
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    fig.update_layout(
        title_text=frame_title(idx[0]),
        xaxis=dict(title_text="head", dtick=1 if n_heads <= 40 else None),
        yaxis=dict(title_text="layer", dtick=1 if n_layers <= 40 else None),
        height=max(420, 22 * n_layers + 260), width=max(600, 30 * n_heads + 300),
        updatemenus=[dict(
            type="buttons", direction="left", showactive=False, x=0.0, xanchor="left", y=-0.12, yanchor="top",
            buttons=[
                dict(label="Play", method="animate",
                     args=[None, {"frame": {"duration": 150, "redraw": True}, "fromcurrent": True,
                                  "transition": {"duration": 0}}]),
                dict(label="Pause", method="animate", args=[[None], still]),
            ],
        )],
        sliders=[dict(
            active=0, x=0.15, len=0.85, y=-0.08, yanchor="top", currentvalue=dict(prefix="step "),
            steps=[dict(label=str(log.steps[i]), method="animate", args=[[name], still])
                   for i, name in zip(idx, names)],
        )],
    )
    return fig


# ---- 4. P(open) before / after -------------------------------------------------------------
def open_count_histogram(log: GateLog, *, bins: int = 20, title: str | None = None) -> go.Figure:
    """Histograms of P(open) over heads at the first and the last logged step, per kind (overlaid).

    Subplot titles give the number of open gates (deterministic > 0) at both steps.

    Example:
        >>> fig = open_count_histogram(demo_gate_log(n_steps=5, n_layers=3, n_heads=4))
        >>> [(t.type, t.name) for t in fig.data][:2]
        [('histogram', 'step 1'), ('histogram', 'step 5')]
    """
    kinds = _check_log(log)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    first, last = log.steps[0], log.steps[-1]
    titles = []
    for k in kinds:
        det = _log_array(log, f"{k}.deterministic")
        titles.append(f"{KIND_NAMES[k]}: {int((det[0] > 0).sum())} open at step {first}, "
                      f"{int((det[-1] > 0).sum())} at step {last}")
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=titles, shared_yaxes=True)
    for c, k in enumerate(kinds, start=1):
        po = _log_array(log, f"{k}.prob_open")
        for i, (pos, colour) in enumerate(((0, "#7f7f7f"), (-1, KIND_COLOURS[k]))):
            step = log.steps[pos]
            fig.add_trace(
                go.Histogram(x=po[pos].ravel(), name=f"step {step}", legendgroup=f"{KIND_NAMES[k]} {i}",
                             marker_color=colour, opacity=0.6,
                             xbins=dict(start=0.0, end=1.0, size=1.0 / bins), autobinx=False,
                             hovertemplate=f"step {step}<br>P(open) %{{x}}<br>%{{y}} heads"
                                           f"<extra>{KIND_NAMES[k]}</extra>"),
                row=1, col=c,
            )
        fig.update_xaxes(title_text="P(open)", range=[0, 1], row=1, col=c)
    fig.update_yaxes(title_text="heads", row=1, col=1)
    fig.update_layout(barmode="overlay", title_text=title or "P(open) per head: first vs last logged step",
                      height=420, width=max(600, 480 * len(kinds)))
    return fig


# ---- 5. selectors ----------------------------------------------------------------------------
def _check_masks(masks: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    if not masks:
        raise ValueError("masks is empty: give {selector name: bool [n_layers, n_heads]}")
    out = {name: _np(m).astype(bool) for name, m in masks.items()}
    shapes = {name: m.shape for name, m in out.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise ValueError(f"every mask must be [n_layers, n_heads] with the same shape, got {shapes}")
    return out


def _abbreviations(names: Sequence[str]) -> list[str]:
    """Per name, its shortest upper-cased prefix that no other name shares (full names if ambiguous)."""
    upper = [n.upper() for n in names]
    out = []
    for i, u in enumerate(upper):
        others = [o for j, o in enumerate(upper) if j != i]
        k = next((k for k in range(1, len(u) + 1) if not any(o.startswith(u[:k]) for o in others)), len(u))
        out.append(u[:k] or names[i])
    return out if len(set(out)) == len(out) else list(names)


def jaccard(a: ArrayLike, b: ArrayLike) -> float:
    """|A and B| / |A or B| of two boolean masks (1.0 when both are empty).

    Example:
        >>> jaccard([[True, True], [False, False]], [[True, False], [True, False]])
        0.3333333333333333
    """
    a_, b_ = _np(a).astype(bool), _np(b).astype(bool)
    if a_.shape != b_.shape:
        raise ValueError(f"masks differ in shape: {a_.shape} vs {b_.shape}")
    union = int((a_ | b_).sum())
    return 1.0 if union == 0 else int((a_ & b_).sum()) / union


def selection_grid(
    masks: Mapping[str, Bool[Tensor, "n_layers n_heads"] | ArrayLike],
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    colorscale: str = "Blues",
) -> go.Figure:
    """Layer x head grid: which selectors chose each head.

    The colour is the number of selectors choosing the head; the cell text lists their
    abbreviations (each name's shortest upper-case prefix no other name starts with, unless
    ``labels`` gives them); hover lists the full names.

    Example:
        >>> import torch
        >>> masks = {"jola": torch.tensor([[True, False], [True, True]]),
        ...          "probe": torch.tensor([[True, True], [False, False]])}
        >>> fig = selection_grid(masks)
        >>> fig.data[0].z.tolist()
        [[2, 1], [1, 1]]
        >>> fig.data[0].text.tolist()
        [['J,P', 'P'], ['J', 'J']]
    """
    arrays = _check_masks(masks)
    names = list(arrays)
    abbr = [labels.get(n, a) for n, a in zip(names, _abbreviations(names))] if labels else _abbreviations(names)
    stack = np.stack([arrays[n] for n in names])  # [n_sel, n_layers, n_heads]
    n_layers, n_heads = stack.shape[1:]
    count = stack.sum(axis=0).astype(int)
    text = np.empty((n_layers, n_heads), dtype=object)
    chosen_by = np.empty((n_layers, n_heads), dtype=object)
    for layer in range(n_layers):
        for head in range(n_heads):
            on = [i for i in range(len(names)) if stack[i, layer, head]]
            text[layer, head] = ",".join(abbr[i] for i in on)
            chosen_by[layer, head] = ", ".join(names[i] for i in on) or "none"
    key = ", ".join(f"{a} = {n} ({int(arrays[n].sum())})" for a, n in zip(abbr, names))
    fig = go.Figure(go.Heatmap(
        z=count, x=list(range(n_heads)), y=list(range(n_layers)), text=text, texttemplate="%{text}",
        customdata=chosen_by, zmin=0, zmax=len(names), colorscale=colorscale, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="selectors"), tickvals=list(range(len(names) + 1))),
        hovertemplate="layer %{y}, head %{x}<br>chosen by %{z}: %{customdata}<extra></extra>",
    ))
    fig.update_layout(
        title=dict(text=title or "Heads chosen by each selector", subtitle=dict(text=key)),
        xaxis=dict(title_text="head", dtick=1 if n_heads <= 40 else None),
        yaxis=dict(title_text="layer", dtick=1 if n_layers <= 40 else None),
        height=max(380, 24 * n_layers + 180), width=max(600, 44 * n_heads + 260),
    )
    return fig


def jaccard_matrix(
    masks: Mapping[str, Bool[Tensor, "n_layers n_heads"] | ArrayLike],
    *,
    title: str | None = None,
    colorscale: str = "Viridis",
) -> go.Figure:
    """Annotated heatmap of the pairwise Jaccard similarity of the selectors' head sets.

    Axis labels give each selector's number of heads; hover gives |A and B| and |A or B|.
    Two empty masks count as identical (1.0).

    Example:
        >>> import torch
        >>> a = torch.tensor([[True, False], [False, False]])
        >>> fig = jaccard_matrix({"x": a, "y": a, "z": ~a})
        >>> fig.data[0].z.tolist()
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    arrays = _check_masks(masks)
    names = list(arrays)
    n = len(names)
    z = np.zeros((n, n))
    custom = np.zeros((n, n, 2), dtype=int)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            z[i, j] = jaccard(arrays[a], arrays[b])
            custom[i, j] = (int((arrays[a] & arrays[b]).sum()), int((arrays[a] | arrays[b]).sum()))
    ticks = [f"{name} ({int(arrays[name].sum())})" for name in names]
    fig = go.Figure(go.Heatmap(
        z=z, x=ticks, y=ticks, customdata=custom, zmin=0.0, zmax=1.0, colorscale=colorscale,
        texttemplate="%{z:.2f}", colorbar=dict(title=dict(text="Jaccard")),
        hovertemplate="%{y} vs %{x}<br>Jaccard %{z:.3f}<br>|A and B| %{customdata[0]}, "
                      "|A or B| %{customdata[1]}<extra></extra>",
    ))
    fig.update_layout(
        title_text=title or "Jaccard similarity of selected heads",
        yaxis=dict(autorange="reversed"), height=max(380, 60 * n + 200), width=max(460, 60 * n + 300),
    )
    return fig


# ---- 6. results ------------------------------------------------------------------------------
def _aggregate(
    rows: Sequence[Mapping[str, Any]], keys: tuple[str, str], metric: str
) -> dict[tuple[Any, Any], tuple[float, float | None, int]]:
    """Group rows by ``keys``: (mean metric, stderr, number of rows), in first-seen order.

    One row: its own ``stderr`` (or None). Several rows (e.g. seeds): the standard error
    of their metric values (sample std / sqrt(n)); their own ``stderr`` fields are ignored.
    """
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for i, row in enumerate(rows):
        missing = [k for k in (*keys, metric) if k not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing}: {dict(row)}")
        groups.setdefault((row[keys[0]], row[keys[1]]), []).append(row)
    out = {}
    for key, group in groups.items():
        vals = np.asarray([float(r[metric]) for r in group])
        if len(group) == 1:
            se = group[0].get("stderr")
            out[key] = (float(vals[0]), None if se is None else float(se), 1)
        else:
            out[key] = (float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(len(vals))), len(group))
    return out


def _error_bars(errors: list[float | None]) -> dict[str, Any] | None:
    if all(e is None for e in errors):
        return None
    return dict(type="data", array=[math.nan if e is None else e for e in errors], visible=True)


def accuracy_vs_size(
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str = "accuracy",
    log_x: bool = False,
    title: str | None = None,
) -> go.Figure:
    """One line per method: ``metric`` against the number of training examples, with error bars.

    Args:
        rows: dicts with ``method``, ``n_train``, ``metric`` and optionally ``stderr``.
            Several rows for one (method, n_train), e.g. seeds, are averaged and their
            standard error is drawn instead of the rows' ``stderr``.
        metric: the key to plot.
        log_x: logarithmic x axis.
        title: figure title.

    Example:
        >>> rows = [{"method": "jola", "n_train": 50, "accuracy": 0.6, "stderr": 0.02},
        ...         {"method": "jola", "n_train": 10, "accuracy": 0.5, "stderr": 0.03},
        ...         {"method": "lora", "n_train": 10, "accuracy": 0.4}]
        >>> fig = accuracy_vs_size(rows)
        >>> [(t.name, list(t.x), list(t.y)) for t in fig.data]
        [('jola', [10, 50], [0.5, 0.6]), ('lora', [10], [0.4])]
    """
    if not rows:
        raise ValueError("rows is empty")
    agg = _aggregate(rows, ("method", "n_train"), metric)
    methods = list(dict.fromkeys(m for m, _ in agg))
    fig = go.Figure()
    for method in methods:
        sizes = sorted(n for m, n in agg if m == method)
        means = [agg[(method, n)][0] for n in sizes]
        errors = [agg[(method, n)][1] for n in sizes]
        runs = [agg[(method, n)][2] for n in sizes]
        fig.add_trace(go.Scatter(
            x=sizes, y=means, error_y=_error_bars(errors), mode="lines+markers", name=str(method),
            customdata=np.asarray([[math.nan if e is None else e, r] for e, r in zip(errors, runs)]),
            hovertemplate=(f"{method}<br>n_train %{{x}}<br>{metric} %{{y:.4g}} +- %{{customdata[0]:.2g}}"
                           "<br>runs %{customdata[1]}<extra></extra>"),
        ))
    fig.update_layout(
        title_text=title or f"{metric} vs training-set size",
        xaxis=dict(title_text="training examples", type="log" if log_x else "linear",
                   # a log axis labels only powers of ten by default: label the sizes that were run
                   **({"tickvals": sorted({n for _, n in agg})} if log_x else {})),
        yaxis=dict(title_text=metric), hovermode="closest", height=450, width=720,
    )
    return fig


def method_bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str = "accuracy",
    title: str | None = None,
) -> go.Figure:
    """Grouped bars: one group per task, one bar (colour) per method, with error bars.

    ``rows`` are dicts with ``task``, ``method``, ``metric`` and optionally ``stderr``;
    repeated (task, method) rows are averaged as in :func:`accuracy_vs_size`. Tasks and
    methods keep their first-seen order; a method missing on a task leaves a gap.

    Example:
        >>> rows = [{"task": "boolq", "method": "jola", "accuracy": 0.7, "stderr": 0.01},
        ...         {"task": "boolq", "method": "zero-shot", "accuracy": 0.5},
        ...         {"task": "piqa", "method": "jola", "accuracy": 0.6}]
        >>> fig = method_bars(rows)
        >>> [(t.name, list(t.x), list(t.y)) for t in fig.data]
        [('jola', ['boolq', 'piqa'], [0.7, 0.6]), ('zero-shot', ['boolq', 'piqa'], [0.5, None])]
    """
    if not rows:
        raise ValueError("rows is empty")
    agg = _aggregate(rows, ("task", "method"), metric)
    tasks = list(dict.fromkeys(t for t, _ in agg))
    methods = list(dict.fromkeys(m for _, m in agg))
    fig = go.Figure()
    for method in methods:
        cells = [agg.get((task, method)) for task in tasks]
        errors = [None if c is None else c[1] for c in cells]
        fig.add_trace(go.Bar(
            x=[str(t) for t in tasks], y=[None if c is None else c[0] for c in cells], name=str(method),
            error_y=_error_bars(errors),
            hovertemplate=f"{method}<br>%{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
        ))
    fig.update_layout(
        barmode="group", title_text=title or f"{metric} per task and method",
        xaxis=dict(title_text="task"), yaxis=dict(title_text=metric),
        height=450, width=min(1600, max(600, 45 * len(tasks) * len(methods) + 200)),
    )
    return fig


# ---- 7. export -------------------------------------------------------------------------------
def save_html(fig: go.Figure, path: str | Path, *, shared_js: bool = False) -> Path:
    """Write ``fig`` as a self-contained HTML file (plotly.js embedded: opens offline).

    ``shared_js=True``: the page loads ``plotly.min.js`` from its own folder instead (written there
    once, about 4.6 MB), so a folder of figures holds one copy of plotly.js, not one per figure; the
    folder still opens offline. Animations do not start by themselves (press Play). Parent folders
    are created.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_html(go.Figure(go.Scatter(y=[1, 2])), Path(d) / "sub" / "fig.html")
        ...     p.name, "plotly.js v" in p.read_text(encoding="utf-8")
        ('fig.html', True)
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(p), include_plotlyjs="directory" if shared_js else True, full_html=True, auto_play=False)
    return p


def _kaleido_version() -> str | None:
    try:
        return metadata.version("kaleido")
    except metadata.PackageNotFoundError:
        return None


def save_png(
    fig: go.Figure, path: str | Path, *, width: int | None = None, height: int | None = None, scale: float = 2.0
) -> Path:
    """Write ``fig`` as a PNG with kaleido (>= 1), which drives a headless Chrome/Chromium.

    Raises:
        RuntimeError: kaleido or the browser is missing; the message (:data:`PNG_EXPORT_HELP`)
            says how to install them.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     try:
        ...         ok = save_png(go.Figure(), Path(d) / "fig.png").is_file()
        ...     except RuntimeError as e:  # no kaleido / Chromium here
        ...         ok = 'pip install "kaleido>=1"' in str(e)
        >>> ok
        True
    """
    from packaging.version import Version

    version = _kaleido_version()
    if version is None or Version(version) < Version("1"):
        found = "kaleido is not installed" if version is None else f"kaleido {version} is too old"
        raise RuntimeError(f"{found}. {PNG_EXPORT_HELP}")
    import plotly.io as pio

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        pio.write_image(fig, str(p), format="png", width=width, height=height, scale=scale)
    except Exception as e:  # kaleido raises several types when Chrome is missing or fails to start
        raise RuntimeError(f"PNG export failed ({type(e).__name__}: {str(e).strip()}). {PNG_EXPORT_HELP}") from e
    return p


def write_run_figures(
    run_dir: str | Path, out_dir: str | Path | None = None, *, site: str = "attn", max_frames: int = 200
) -> list[Path]:
    """Write a saved run's figures as HTML files sharing one ``plotly.min.js`` in ``out_dir``
    (offline, one copy of plotly.js for the folder); returns their paths.

    From ``edits.safetensors`` + ``jola_config.json``: ``gate_heatmap.html`` (final gates and
    norms, :func:`head_heatmap`). From ``gate_log.safetensors`` + ``gate_log.json``, when the
    log has steps (it records the attention site): ``gate_trajectories.html``,
    ``prob_open_histogram.html`` and ``gate_animation_<kind>.html`` per edit kind (at most
    ``max_frames`` frames). No model is loaded.

    Args:
        run_dir: the run directory (``JoLATrainer(out_dir=...)``).
        out_dir: where to write (default: ``run_dir/figures``).
        site: the edit site of the heatmap.
        max_frames: frame budget of each animation.

    Example:
        >>> import tempfile
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens import JoLAModel
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4,
        ...                               d_vocab=20, act_fn="gelu")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = JoLAModel(HookedTransformer(cfg)).save(d)
        ...     demo_gate_log(n_steps=3, n_layers=2, n_heads=4).save(d)
        ...     paths = write_run_figures(d)
        >>> [p.stem for p in paths]  # doctest: +NORMALIZE_WHITESPACE
        ['gate_heatmap', 'gate_trajectories', 'prob_open_histogram', 'gate_animation_a',
         'gate_animation_m']
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"run directory {d} does not exist")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    out = Path(out_dir) if out_dir is not None else d / "figures"
    name = d.resolve().name
    gates, norms = load_final_gates(d, site)
    written = [save_html(head_heatmap(gates, norms, title=f"{name}: final gates ({site})"), out / "gate_heatmap.html",
                         shared_js=True)]
    if site == "attn" and (d / "gate_log.json").is_file():
        log = GateLog.load(d)
        if log.steps:
            written.append(save_html(gate_trajectories(log, title=f"{name}: gates during training"),
                                     out / "gate_trajectories.html", shared_js=True))
            written.append(save_html(open_count_histogram(log, title=f"{name}: P(open), first vs last step"),
                                     out / "prob_open_histogram.html", shared_js=True))
            every = max(1, math.ceil(len(log.steps) / max_frames))
            for k in _log_kinds(log):
                fig = gate_animation(log, k, "deterministic", every=every, title=f"{name}: {KIND_NAMES[k]} gates")
                written.append(save_html(fig, out / f"gate_animation_{k}.html", shared_js=True))
    return written
