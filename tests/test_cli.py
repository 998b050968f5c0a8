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


def test_heads_on_saved_run(tiny_model, tmp_path, capsys):
    import torch

    jm = JoLAModel(tiny_model)
    with torch.no_grad():
        e = jm.edits["attn"]
        e.gate_a.log_alpha.fill_(-10)
        e.gate_m.log_alpha.fill_(-10)
        e.gate_a.log_alpha[1, 3] = 4.0
    jm.save(tmp_path / "run")
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
                     "gate_trajectories.html", "prob_open_histogram.html"]
