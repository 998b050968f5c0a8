import subprocess
import sys

import pytest

from jola_lens import JoLAModel
from jola_lens.cli import main, read_run_heads


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jola_lens.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["heads", "no/such/run"], "not a saved JoLA run"),
        (["eval", "--task", "no_such_task", "--no-progress"], "error"),
        (["train", "--out", "x", "--config", "missing.yaml"], "config file not found"),
        (["train", "--out", "x", "--lr", "nan", "--no-progress"], "lr must be a finite number"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, needle, tmp_path):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("jola-lens: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_yaml_and_bad_settings(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {penalty: nonsense}\n")
    assert main(["train", "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "penalty must be one of" in capsys.readouterr().err
    cfg.write_text("foo: [1, 2\n")
    assert main(["train", "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2


def test_missing_subcommand_is_usage_error():
    r = run_cli()
    assert r.returncode == 2 and "usage" in r.stderr


def _save_one_open_head(model, run):
    """A JoLA run on ``model`` whose only open gate is the additive one of layer 1, head 3."""
    import torch

    jm = JoLAModel(model)
    with torch.no_grad():
        e = jm.edits["attn"]
        e.gate_a.log_alpha.fill_(-10)
        e.gate_m.log_alpha.fill_(-10)
        e.gate_a.log_alpha[1, 3] = 4.0
    jm.save(run)


def test_heads_on_saved_run(tiny_model, tmp_path, capsys):
    _save_one_open_head(tiny_model, tmp_path / "run")
    rows = read_run_heads(tmp_path / "run")
    assert [(r["layer"], r["head"]) for r in rows if r["g_a"] > 0] == [(1, 3)]
    assert main(["heads", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "1 of 12 heads open" in out


def test_heads_html_writes_the_figures(tiny_model, tmp_path, capsys):
    """`jola-lens heads RUN --html DIR`: the table, then the heatmap and the trajectory figures."""
    import torch

    from jola_lens.train import GateLog

    jm = JoLAModel(tiny_model)
    with torch.no_grad():
        jm.edits["attn"].gate_a.log_alpha.fill_(-10)
        jm.edits["attn"].gate_m.log_alpha.fill_(-10)
        jm.edits["attn"].gate_a.log_alpha[0, 1] = 4.0
    log = GateLog()
    jm.train()
    for step in (1, 2, 3):
        with jm.applied():
            tiny_model(torch.tensor([[1, 2, 3]]))  # a forward pass draws the gates the log records
        log.record(step, 1e-3, jm)
    jm.eval()
    run = tmp_path / "run"
    jm.save(run)
    log.save(run)
    assert main(["heads", str(run), "--html", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "1 of 12 heads open" in out
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["gate_animation_a.html", "gate_animation_m.html", "gate_heatmap.html",
                     "gate_trajectories.html", "plotly.min.js", "prob_open_histogram.html"]


def test_help_and_version_do_not_import_torch():
    code = ("import sys; from jola_lens.cli import build_parser\n"
            "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformer_lens' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "False False", r.stdout + r.stderr
    v = run_cli("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"jola-lens {__import__('jola_lens').__version__}"


@pytest.mark.parametrize("argv,needle", [
    (["train", "--data", "{d}/rows.csv", "--answer-field", "label", "--out", "{d}/o"], "no field 'label'"),
    (["train", "--data", "{d}/rows.csv", "--train-size", "50", "--out", "{d}/o"],
     "12 examples cannot give a test split of 300"),
    (["eval", "--data", "{d}/rows.csv", "--answer-field", "label"], "no field 'label'"),
])
def test_data_errors_come_before_torch_is_imported(tmp_path, argv, needle):
    # the CLI reads and checks the data with torch-free modules: the error needs no torch import
    rows = "question,choices,answer\n" + "".join(f"q{i}?,yes|no,{'yes' if i % 2 else 'no'}\n" for i in range(12))
    (tmp_path / "rows.csv").write_text(rows)
    args = [a.format(d=tmp_path) for a in argv]
    code = ("import sys; from jola_lens.cli import main\n"
            f"rc = main({args!r})\n"
            "print('RESULT', rc, 'torch' in sys.modules, 'transformer_lens' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "RESULT 2 False False", r.stdout + r.stderr
    assert needle in r.stderr and r.stderr.count("jola-lens: error:") == 1, r.stderr


def test_help_shows_defaults():
    r = run_cli("train", "--help")
    assert "(default: smollm2)" in r.stdout and "(default: 50)" in r.stdout and "demo: 3, paper: 20" in r.stdout


def test_heads_json_and_csv(tiny_model, tmp_path, capsys):
    import csv
    import io
    import json

    _save_one_open_head(tiny_model, tmp_path / "run")
    capsys.readouterr()
    assert main(["heads", str(tmp_path / "run"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["layer"], r["head"]) for r in rows] == [(1, 3)] and rows[0]["g_a"] > 0.9
    assert main(["heads", str(tmp_path / "run"), "--format", "csv", "--all"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 12 and table[0]["layer"] == "1" and table[0]["head"] == "3"


def test_run_figures_share_one_plotly_js(tmp_path):
    from transformer_lens import HookedTransformer

    from jola_lens.plots import demo_gate_log, write_run_figures
    from tests.conftest import tiny_cfg

    JoLAModel(HookedTransformer(tiny_cfg())).save(tmp_path / "run")
    demo_gate_log(n_steps=3, n_layers=3, n_heads=4).save(tmp_path / "run")
    paths = write_run_figures(tmp_path / "run", tmp_path / "figs")
    assert len(paths) == 5 and (tmp_path / "figs" / "plotly.min.js").is_file()
    for p in paths:  # each page refers to the shared file instead of embedding plotly.js (~4.6 MB)
        text = p.read_text(encoding="utf-8")
        assert 'src="plotly.min.js"' in text and p.stat().st_size < 1_000_000
