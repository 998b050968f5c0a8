"""Issue 22's attacks, each as a test: the CLI in child processes on a tiny random checkpoint (and the
bundled model for seeds), killed, interrupted, pointed at bad folders, data and settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import save_tiny_checkpoint, write_task

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
SMALL = ["--train-size", "16", "--valid-size", "4", "--test-size", "8", "--epochs", "2", "--batch-size", "4",
         "--no-progress", "--no-generation", "--no-zero-shot"]


def cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "jola_lens.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout)


def one_error_line(r, code=2):
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    errs = [x for x in r.stderr.splitlines() if x.startswith("jola-lens: error:")]
    assert len(errs) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return errs[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("reliability")
    save_tiny_checkpoint(d / "ckpt")
    save_tiny_checkpoint(d / "other", seed=1)  # same architecture and shapes, other weights
    write_task(d / "task")
    write_task(d / "big", n_train=240, n_test=8)
    write_task(d / "index_ids", n_train=24, n_test=8, ids="index")
    write_task(d / "same_ids", n_train=24, n_test=8, ids="same")
    return d


def train(world, out, *extra, task="task", model="ckpt", timeout=300):
    return cli("train", "--model", model, "--task", task, "--out", out, *SMALL, *extra, cwd=world, timeout=timeout)


def tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(a, b):
    import torch

    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


# ---- 1. seeds ---------------------------------------------------------------------------------------
def test_same_seed_in_two_processes_gives_bit_identical_edits(world):
    for out in ("seed_a", "seed_b"):
        r = train(world, out, "--seed", "7")
        assert r.returncode == 0, r.stderr[-2000:]
    edits = {out: (world / out / "edits.safetensors").read_bytes() for out in ("seed_a", "seed_b")}
    assert edits["seed_a"] == edits["seed_b"]
    assert train(world, "seed_c", "--seed", "8").returncode == 0
    assert edits["seed_a"] != (world / "seed_c" / "edits.safetensors").read_bytes()


@pytest.mark.integration
def test_same_seed_on_the_bundled_model_gives_bit_identical_edits(tmp_path):
    args = ["train", "--task", "demo", "--train-size", "8", "--valid-size", "4", "--test-size", "4", "--epochs", "1",
            "--batch-size", "4", "--no-progress", "--no-generation", "--no-zero-shot", "--seed", "3"]
    for out in ("a", "b"):
        r = cli(*args, "--out", out, cwd=tmp_path, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "a" / "edits.safetensors").read_bytes() == (tmp_path / "b" / "edits.safetensors").read_bytes()


# ---- 2. settings that would poison a run ------------------------------------------------------------
@pytest.mark.parametrize("flag,value,needle", [("--lr", "inf", "lr must be a finite number"),
                                               ("--gate-lr", "nan", "finite"),
                                               ("--gate-lambda", "nan", "finite")])
def test_non_finite_settings_stop_before_the_model_loads(world, flag, value, needle):
    r = train(world, "nf", flag, value)
    assert needle in one_error_line(r) and "Loading weights" not in r.stderr
    assert not (world / "nf").exists()


def test_a_diverging_run_exits_3_and_saves_no_edits_and_no_results(world):
    r = train(world, "diverge", "--lr", "1e6")
    line = one_error_line(r, code=3)
    assert "diverged" in line and "learning rate" in line
    left = {p.name for p in (world / "diverge").iterdir()}
    assert "edits.safetensors" not in left and "results.json" not in left and "jola_config.json" not in left
    assert json.loads((world / "diverge" / "train_result.json").read_text())["stopped"] == "diverged"


# ---- 3. kill -9 and Ctrl-C ------------------------------------------------------------------------
BIG = ["--model", "ckpt", "--task", "big", "--train-size", "200", "--valid-size", "8", "--test-size", "8", "--epochs",
       "1", "--batch-size", "1", "--checkpoint-every", "1", "--no-progress", "--no-generation", "--no-zero-shot"]


def _start(world, out):
    return subprocess.Popen([sys.executable, "-m", "jola_lens.cli", "train", *BIG, "--out", out], cwd=world, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(world, out, step, proc, timeout=120):
    latest = world / out / "checkpoint" / "latest.json"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before step {step}: {proc.stderr.read()[-2000:]}")
        try:
            if json.loads(latest.read_text())["step"] >= step:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def uninterrupted(world):
    r = cli("train", *BIG, "--out", "full", cwd=world)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (world / "full" / "checkpoint").exists()  # a finished run clears its checkpoint
    return world / "full"


def test_kill_9_then_rerun_gives_the_uninterrupted_edits(world, uninterrupted):
    proc = _start(world, "killed")
    _wait_for_step(world, "killed", 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (world / "killed" / "results.json").exists()
    step = json.loads((world / "killed" / "checkpoint" / "latest.json").read_text())["step"]
    assert 20 <= step < 200
    r = cli("train", *BIG, "--out", "killed", "--resume", cwd=world)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "continuing the checkpoint" in r.stdout
    assert_same_tensors(uninterrupted / "edits.safetensors", world / "killed" / "edits.safetensors")
    assert_same_tensors(uninterrupted / "gate_log.safetensors", world / "killed" / "gate_log.safetensors")


def test_ctrl_c_checkpoints_exits_130_and_the_same_command_continues(world, uninterrupted):
    proc = _start(world, "ctrlc")
    _wait_for_step(world, "ctrlc", 10, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint" in err and "Traceback" not in err
    assert not (world / "ctrlc" / "results.json").exists() and not (world / "ctrlc" / "edits.safetensors").exists()
    r = cli("train", *BIG, "--out", "ctrlc", cwd=world)  # the same command, no flag: it continues
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_tensors(uninterrupted / "edits.safetensors", world / "ctrlc" / "edits.safetensors")


# ---- 4. output folders ------------------------------------------------------------------------------
def test_a_finished_run_is_not_overwritten_without_overwrite(world):
    assert train(world, "done").returncode == 0
    before = (world / "done" / "edits.safetensors").read_bytes()
    line = one_error_line(train(world, "done", "--seed", "5"))
    assert "already holds a finished run" in line and "--overwrite" in line
    assert (world / "done" / "edits.safetensors").read_bytes() == before
    (world / "done" / "checkpoint").mkdir()
    (world / "done" / "checkpoint" / "latest.json").write_text("{}")  # stale
    assert train(world, "done", "--seed", "5", "--overwrite").returncode == 0
    assert (world / "done" / "edits.safetensors").read_bytes() != before
    assert not (world / "done" / "checkpoint").exists()


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(world):
    from jola_lens.outdir import OutputFolder

    with OutputFolder(world / "busy"):
        line = one_error_line(train(world, "busy"))
        assert "being written by another jola-lens run" in line and str(os.getpid()) in line
    assert train(world, "busy").returncode == 0  # free again once the first let go


def test_unwritable_out_fails_in_one_line_before_the_model_loads(world):
    (world / "plain_file").write_text("x")  # a folder below a file cannot be created, not even by root
    r = train(world, "plain_file/run")
    assert "cannot write into output folder" in one_error_line(r) and "Loading weights" not in r.stderr


def test_out_that_is_a_file_fails_in_one_line(world):
    (world / "afile").write_text("x")
    assert "is a file" in one_error_line(train(world, "afile"))


# ---- 5. data ------------------------------------------------------------------------------------
def test_per_file_index_ids_drop_nothing_and_say_so(world):
    r = train(world, "idx", task="index_ids", )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "jola-lens: note:" in r.stderr and "ids are ignored" in r.stderr
    assert json.loads((world / "idx" / "results.json").read_text())["n_train"] == 16


def test_all_equal_ids_are_named_as_the_cause(world):
    r = train(world, "same", task="same_ids")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ids are not unique (1 distinct ids in 24 rows)" in r.stderr


def test_bad_layers_are_refused_before_zero_shot_scoring(world):
    with_zero_shot = [a for a in SMALL if a != "--no-zero-shot"]
    r = cli("train", "--model", "ckpt", "--task", "task", "--out", "lay", "--layers", "99", *with_zero_shot, cwd=world)
    assert "layers [99] do not exist" in one_error_line(r) and "zero-shot" not in r.stdout


def test_bad_data_is_refused_before_the_model_loads(world):
    (world / "broken").mkdir(exist_ok=True)
    (world / "broken" / "train.jsonl").write_text('{"question": "q", "answer": "answer3", "choices": ["a", "b"]}\n')
    (world / "broken" / "test.jsonl").write_text('{"question": "q2", "answer": "answer1", "choices": ["a", "b"]}\n')
    r = train(world, "brk", task="broken")
    assert "line 1" in one_error_line(r) and "Loading weights" not in r.stderr


@pytest.mark.parametrize("yaml_text,needle", [
    ("train: {warmup_steps: three}\n", "train.warmup_steps must be an integer"),
    ("jola: {layers: [x]}\n", "jola.layers[0] must be an integer"),
    ("jola: 1\n", "section 'jola' must be a mapping"),
])
def test_yaml_with_wrong_types_is_one_line(world, yaml_text, needle):
    (world / "c.yaml").write_text(yaml_text)
    assert needle in one_error_line(train(world, "y", "--config", "c.yaml"))


def test_yaml_numbers_written_as_strings_are_read_as_numbers(world):
    (world / "n.yaml").write_text("train: {lr: 1e-3, epochs: 1}\njola: {layers: 1}\n")
    assert train(world, "ynum", "--config", "n.yaml").returncode == 0
    saved = json.loads((world / "ynum" / "jola_config.json").read_text())
    assert saved["config"]["layers"] == [1] and saved["extra"]["train_config"]["lr"] == 1e-3


# ---- 6. corruption and 8. identity ------------------------------------------------------------------
def test_a_flipped_byte_in_saved_edits_is_refused(world):
    assert train(world, "flip").returncode == 0
    p = world / "flip" / "edits.safetensors"
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF  # in the tensor data, past the header
    p.write_bytes(bytes(data))
    r = cli("eval", "--model", "ckpt", "--task", "task", "--run", "flip", "--no-progress", "--no-generation",
            "--test-size", "4", cwd=world)
    assert "checksum" in one_error_line(r) or "corrupt" in one_error_line(r)


def test_identity_is_by_weights_not_by_path(world):
    assert train(world, "ident").returncode == 0
    ev = ["eval", "--task", "task", "--run", "ident", "--no-progress", "--no-generation", "--test-size", "4"]
    assert cli(*ev, "--model", str((world / "ckpt").resolve()), cwd=world).returncode == 0  # same model, other path
    assert cli(*ev, "--model", "./ckpt", cwd=world).returncode == 0
    line = one_error_line(cli(*ev, "--model", "other", cwd=world))
    assert "weights differ" in line and "--allow-other-model" in line
    assert cli(*ev, "--model", "other", "--allow-other-model", cwd=world).returncode == 0


def test_the_attack_run_records_its_verdicts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "analysis.reliability.attack", "--only", "out-is-file", "style-bad",
                        "--out", str(tmp_path), "--tag", "t"], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads((tmp_path / "attack_t.json").read_text())
    assert got["tried"] == 2 and got["held"] == 2 and {a["key"] for a in got["attacks"]} == {"out-is-file", "style-bad"}
    assert "tried 2, held 2, failed 0" in r.stdout


def test_a_csv_with_field_flags_trains_and_reports_the_carving(world):
    import csv

    with open(world / "mine.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "options", "label"])
        w.writerows((f"what is red {i} ?", "red|blue", i % 2) for i in range(20))
    flags = ["--data", "mine.csv", "--prompt-field", "text", "--answer-field", "label", "--choices-field", "options"]
    small = one_error_line(cli("train", "--model", "ckpt", "--out", "csv0", *flags, "--test-size", "300",
                               "--no-progress", cwd=world))
    assert "20 examples cannot give a test split of 300" in small and "--test-size) to 4" in small
    # no sizes given: the defaults shrink to fit the 20 rows (test 4, validation 3, train 13), with a note
    r = cli("train", "--model", "ckpt", "--out", "csv2", *flags, "--epochs", "1", "--no-progress", "--no-generation",
            cwd=world)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "do not fit this data; using train_size 13, valid_size 3, test_size 4" in r.stderr
    assert json.loads((world / "csv2" / "results.json").read_text())["n_test"] == 4
    r = cli("train", "--model", "ckpt", "--out", "csv1", *flags, "--train-size", "12", "--valid-size", "4",
            "--test-size", "4", "--epochs", "1", "--no-progress", "--no-generation", cwd=world)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "one file, carved into test 4 (seed 0), train 12 and validation 4 (seed 42)" in r.stderr
    assert json.loads((world / "csv1" / "results.json").read_text())["n_test"] == 4
