"""The reliability attack run (issue 22): a hostile but realistic user, from the command line and the
Python API, against a tiny random checkpoint (and, with ``--bundled``, the bundled model).

Each attack does one thing a user might do (a NaN learning rate, ``kill -9`` mid-run, two runs
into one folder, a flipped byte in a cache...) in child processes and says whether the library
*held* (refused in one line, recovered, or did the right thing) or *failed* (a traceback, a silent
wrong result, lost data). ``--repo`` points the children at another checkout, so the same attacks
measure a commit from before a change::

    python -m analysis.reliability.attack                      # this checkout
    git worktree add /tmp/before <commit>
    python -m analysis.reliability.attack --repo /tmp/before --tag before

Writes ``attack_<tag>.json`` beside this file (one record per attack) and prints the table and the
count tried / held / failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass
class Attack:
    key: str
    group: str
    what: str
    run: Callable[["World"], tuple[bool, str]]


ATTACKS: list[Attack] = []


def attack(key: str, group: str, what: str):
    def register(fn):
        ATTACKS.append(Attack(key, group, what, fn))
        return fn
    return register


class World:
    """A scratch folder with two tiny checkpoints (same shapes, other weights) and task folders."""

    SMALL = ["--train-size", "16", "--valid-size", "4", "--test-size", "8", "--epochs", "2", "--batch-size", "4",
             "--no-progress", "--no-generation", "--no-zero-shot"]
    BIG = ["--task", "big", "--train-size", "200", "--valid-size", "8", "--test-size", "8", "--epochs", "1",
           "--batch-size", "1", "--no-progress", "--no-generation", "--no-zero-shot"]

    def __init__(self, root: Path, repo: Path) -> None:
        self.root, self.repo = root, repo
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(repo),
                    "JOLA_LENS_CACHE": str(root / "cache")}
        sys.path.insert(0, str(REPO))
        from jola_lens.testing import save_tiny_checkpoint, write_task

        save_tiny_checkpoint(root / "ckpt")
        save_tiny_checkpoint(root / "other", seed=1)
        write_task(root / "task")
        write_task(root / "big", n_train=240, n_test=8)
        write_task(root / "index_ids", ids="index")
        write_task(root / "same_ids", ids="same")
        self.n = 0

    def out(self) -> str:
        self.n += 1
        return f"out{self.n}"

    def cli(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jola_lens.cli", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def train(self, out: str, *extra: str, task: str = "task", model: str = "ckpt") -> subprocess.CompletedProcess:
        return self.cli("train", "--model", model, "--task", task, "--out", out, *self.SMALL, *extra)

    def py(self, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=600)

    def popen_big(self, out: str) -> subprocess.Popen:
        flags = ["--checkpoint-every", "1"] if self.has_flag("--checkpoint-every") else []
        return subprocess.Popen([sys.executable, "-m", "jola_lens.cli", "train", "--model", "ckpt", *self.BIG, *flags,
                                 "--out", out], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    _help: str | None = None

    def has_flag(self, flag: str) -> bool:
        if self._help is None:
            self._help = self.cli("train", "--help").stdout
        return flag in self._help

    def p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


# ---- verdict helpers --------------------------------------------------------------------------------
def one_line(r: subprocess.CompletedProcess, code: int = 2, needle: str = "") -> tuple[bool, str]:
    errs = [x for x in r.stderr.splitlines() if x.startswith("jola-lens: error:")]
    ok = r.returncode == code and len(errs) == 1 and "Traceback" not in r.stderr and needle.lower() in errs[0].lower()
    return ok, _describe(r)


def _describe(r: subprocess.CompletedProcess) -> str:
    errs = [x for x in r.stderr.splitlines() if x.startswith("jola-lens: error:")]
    if "Traceback" in r.stderr:
        last = [x for x in r.stderr.strip().splitlines() if x.strip()][-1]
        return f"exit {r.returncode}, traceback ({last[:100]})"
    return f"exit {r.returncode}" + (f": {errs[0][17:][:110]}" if errs else "")


def refused_early(r: subprocess.CompletedProcess, needle: str = "") -> tuple[bool, str]:
    """Refused in one line (exit 2) before the model was loaded."""
    ok, seen = one_line(r, 2, needle)
    return ok and not loaded_model(r), seen


def _last(r: subprocess.CompletedProcess) -> str:
    lines = [x for x in r.stdout.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


def _verdict(r: subprocess.CompletedProcess) -> tuple[bool, str]:
    """A Python snippet's verdict: it prints True or False last; anything else (a traceback) failed."""
    last = _last(r)
    return last == "True", last if last in ("True", "False") else _describe(r)


def loaded_model(r: subprocess.CompletedProcess) -> bool:
    return "Loading weights" in r.stderr or "[jola_lens] task" in r.stdout


def same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


# ---- 1. seeds ---------------------------------------------------------------------------------------
@attack("seed-cli", "seeds", "the same `train --seed 7` twice in two processes: edits bit for bit equal")
def _(w: World):
    a, b = w.out(), w.out()
    for o in (a, b):
        w.train(o, "--seed", "7")
    same = same_file(w.p(a, "edits.safetensors"), w.p(b, "edits.safetensors"))
    return same, "identical" if same else "the two runs' edits differ"


@attack("seed-other", "seeds", "another seed gives other edits (the seed is used at all)")
def _(w: World):
    a, b = w.out(), w.out()
    w.train(a, "--seed", "7")
    w.train(b, "--seed", "8")
    differ = w.p(a, "edits.safetensors").is_file() and not same_file(w.p(a, "edits.safetensors"),
                                                                      w.p(b, "edits.safetensors"))
    return differ, "differ" if differ else "same edits for seeds 7 and 8"


@attack("seed-bundled", "seeds", "the same seed twice on the bundled SmolLM2 (two processes): edits bit for bit equal")
def _(w: World):
    a, b = w.out(), w.out()
    for o in (a, b):
        w.cli("train", "--task", "demo", "--train-size", "8", "--valid-size", "4", "--test-size", "4", "--epochs", "1",
              "--batch-size", "4", "--no-progress", "--no-generation", "--no-zero-shot", "--seed", "3", "--out", o)
    same = same_file(w.p(a, "edits.safetensors"), w.p(b, "edits.safetensors"))
    return same, "identical" if same else "differ (or missing)"


@attack("seed-api", "seeds", "Python API: get_editor twice after the same torch.manual_seed: the same start")
def _(w: World):
    r = w.py("import torch; from jola_lens import load_model; from jola_lens.experiment import build_editor\n"
             "m = load_model('ckpt', verbose=False)\n"
             "a = build_editor(m, 'lora', seed=1); b = build_editor(m, 'lora', seed=1)\n"
             "print(all(torch.equal(p, q) for p, q in zip(a.edit_parameters(), b.edit_parameters())))")
    return _verdict(r)


# ---- 2. settings ------------------------------------------------------------------------------------
for flag, value in (("--lr", "nan"), ("--lr", "inf"), ("--gate-lr", "nan"), ("--gate-lambda", "nan"), ("--lr", "-1"),
                    ("--epochs", "0"), ("--batch-size", "0"), ("--warmup-steps", "-3")):
    def _settings(w: World, flag=flag, value=value):
        o = w.out()
        r = w.train(o, flag, value)
        ok, seen = one_line(r)
        return ok and not loaded_model(r) and not w.p(o, "edits.safetensors").exists(), seen
    attack(f"setting{flag}={value}", "settings", f"`{flag} {value}`: refused in one line before the model loads")(
        _settings)


@attack("lr-1e6", "settings", "`--lr 1e6` (diverges): non-zero exit, no edits and no results saved")
def _(w: World):
    o = w.out()
    r = w.train(o, "--lr", "1e6")
    saved = [n for n in ("edits.safetensors", "results.json") if w.p(o, n).exists()]
    ok = r.returncode not in (0, 2) and not saved and "diverged" in r.stderr
    return ok, _describe(r) + (f"; saved {saved}" if saved else "")


YAMLS = {"yaml-lr-string": ("train: {lr: 1e-3, epochs: 1}\n", 0, "YAML `lr: 1e-3` (a string to YAML): read as 0.001"),
         "yaml-epochs-three": ("train: {warmup_steps: three}\n", 2, "YAML `warmup_steps: three`: one line"),
         "yaml-layers-int": ("jola: {layers: 1}\n", 0, "YAML `jola: {layers: 1}`: read as layers [1]"),
         "yaml-section-int": ("jola: 1\n", 2, "YAML `jola: 1`: one line"),
         "yaml-unknown": ("train: {lrr: 0.1}\n", 2, "YAML with an unknown field: one line naming it"),
         "yaml-broken": ("train: {lr: [1, 2\n", 2, "YAML that does not parse: one line")}
for key, (text, code, what) in YAMLS.items():
    def _yaml(w: World, text=text, code=code, key=key):
        o = w.out()
        w.p(f"{key}.yaml").write_text(text)
        r = w.train(o, "--config", f"{key}.yaml")
        if code:
            return one_line(r, code)
        ok = r.returncode == 0
        if ok and key == "yaml-lr-string":
            ok = json.loads(w.p(o, "jola_config.json").read_text())["extra"]["train_config"]["lr"] == 1e-3
        if ok and key == "yaml-layers-int":
            ok = json.loads(w.p(o, "jola_config.json").read_text())["config"]["layers"] == [1]
        return ok, _describe(r)
    attack(key, "settings", what)(_yaml)


@attack("layers-99", "settings", "`--layers 99` on a 2-layer model: one line before zero-shot scoring")
def _(w: World):
    r = w.cli("train", "--model", "ckpt", "--task", "task", "--out", w.out(), "--layers", "99",
              *[a for a in w.SMALL if a != "--no-zero-shot"])
    ok, seen = one_line(r, 2, "layer")
    return ok and "zero-shot evaluation" not in r.stdout, seen


@attack("layers-text", "settings", "`--layers x`: one line")
def _(w: World):
    return one_line(w.train(w.out(), "--layers", "x"), 2, "layer")


@attack("style-bad", "settings", "`--style foo`: one line before the model loads")
def _(w: World):
    r = w.train(w.out(), "--style", "foo")
    return refused_early(r, "style")


@attack("method-bad", "settings", "`--method nope`: one line before the model loads")
def _(w: World):
    r = w.train(w.out(), "--method", "nope")
    return refused_early(r, "method")


# ---- 3. interruptions -------------------------------------------------------------------------------
def _wait_step(w: World, out: str, proc: subprocess.Popen, step: int, timeout: float = 180) -> bool:
    """Until the run's checkpoint reaches ``step``; a checkout without periodic checkpoints: 5.5 s (past
    loading the tiny model, inside the 200 training steps)."""
    if not w.has_flag("--checkpoint-every"):
        time.sleep(5.5)
        return False
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        for f in (w.p(out, "checkpoint", "latest.json"), w.p(out, "checkpoint", "trainer_state.json")):
            try:
                if json.loads(f.read_text())["step"] >= step:
                    return True
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.01)
    return False


_REFERENCE: dict[str, Path] = {}


def reference(w: World) -> Path:
    if "big" not in _REFERENCE:
        o = w.out()
        flags = ["--checkpoint-every", "1"] if w.has_flag("--checkpoint-every") else []
        w.cli("train", "--model", "ckpt", *w.BIG, *flags, "--out", o)
        _REFERENCE["big"] = w.p(o)
    return _REFERENCE["big"]


@attack("ctrl-c", "interrupt", "Ctrl-C (SIGINT) mid-training: checkpoint, exit 130, no results for unsaved edits")
def _(w: World):
    o = w.out()
    proc = w.popen_big(o)
    if not _wait_step(w, o, proc, 10, timeout=60):  # no periodic checkpoints: interrupt a few seconds in
        pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    ckpt = w.p(o, "checkpoint").is_dir()
    results = w.p(o, "results.json").exists()
    ok = proc.returncode == 130 and ckpt and not results and "Traceback" not in err
    yes = {True: "yes", False: "no"}
    return ok, f"exit {proc.returncode}, checkpoint {yes[ckpt]}, results.json {yes[results]}"


@attack("ctrl-c-rerun", "interrupt", "after Ctrl-C, the same command again: continues to the uninterrupted edits")
def _(w: World):
    o = w.out()
    proc = w.popen_big(o)
    _wait_step(w, o, proc, 10, timeout=60)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    flags = ["--checkpoint-every", "1"] if w.has_flag("--checkpoint-every") else []
    r = w.cli("train", "--model", "ckpt", *w.BIG, *flags, "--out", o)
    same = same_file(reference(w) / "edits.safetensors", w.p(o, "edits.safetensors"))
    return same and r.returncode == 0, _describe(r) + ("; edits equal" if same else "; edits differ or missing")


@attack("kill-9", "interrupt", "kill -9 after step 20, then `--resume`: the uninterrupted run's edits, bit for bit")
def _(w: World):
    o = w.out()
    proc = w.popen_big(o)
    reached = _wait_step(w, o, proc, 20, timeout=120)
    if proc.poll() is None:
        if not reached:
            time.sleep(8)
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    left = sorted(p.name for p in w.p(o).iterdir()) if w.p(o).is_dir() else []
    r = w.cli("train", "--model", "ckpt", *w.BIG, "--resume", "--out", o)
    same = same_file(reference(w) / "edits.safetensors", w.p(o, "edits.safetensors"))
    return same and r.returncode == 0, f"left after the kill: {left or 'nothing'}; resume: {_describe(r)}" + (
        "; edits equal" if same else "")


@attack("resume-nothing", "interrupt", "`--resume` into a folder with no checkpoint: one line")
def _(w: World):
    return one_line(w.train(w.out(), "--resume"), 2, "no checkpoint")


@attack("resume-other-run", "interrupt", "a checkpoint, then the command again with another --lr: refused, not mixed")
def _(w: World):
    o = w.out()
    proc = w.popen_big(o)
    _wait_step(w, o, proc, 5, timeout=60)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    r = w.cli("train", "--model", "ckpt", *w.BIG, "--lr", "0.05", "--out", o)
    return one_line(r, 2, "different run")


@attack("checkpoint-corrupt", "interrupt", "a flipped byte in the checkpoint, then resume: refused in one line")
def _(w: World):
    o = w.out()
    proc = w.popen_big(o)
    _wait_step(w, o, proc, 5, timeout=60)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    files = sorted(w.p(o, "checkpoint").glob("*.safetensors")) if w.p(o, "checkpoint").is_dir() else []
    if not files:
        return False, "no checkpoint to corrupt (none written before the kill)"
    data = bytearray(files[0].read_bytes())
    data[-9] ^= 0xFF
    files[0].write_bytes(bytes(data))
    return one_line(w.cli("train", "--model", "ckpt", *w.BIG, "--resume", "--out", o), 2, "corrupt")


# ---- 4. output folders ------------------------------------------------------------------------------
@attack("out-finished", "folders", "train into a folder holding a finished run: refused, the run untouched")
def _(w: World):
    o = w.out()
    w.train(o)
    before = w.p(o, "edits.safetensors").read_bytes() if w.p(o, "edits.safetensors").is_file() else b""
    r = w.train(o, "--seed", "5")
    after = w.p(o, "edits.safetensors").read_bytes() if w.p(o, "edits.safetensors").is_file() else b""
    ok, seen = one_line(r, 2, "finished run")
    return ok and before == after, seen + ("" if before == after else "; the edits were replaced")


@attack("out-overwrite", "folders", "`--overwrite` replaces a finished run and leaves no stale checkpoint")
def _(w: World):
    o = w.out()
    w.train(o)
    w.p(o, "checkpoint").mkdir(exist_ok=True)
    (w.p(o, "checkpoint") / "stale.txt").write_text("x")
    r = w.train(o, "--seed", "5", "--overwrite")
    ok = r.returncode == 0 and not w.p(o, "checkpoint").exists()
    return ok, _describe(r) + ("; stale checkpoint left" if w.p(o, "checkpoint").exists() else "")


@attack("out-concurrent", "folders", "two runs into one --out at once: the second is refused, the first finishes")
def _(w: World):
    o = w.out()
    first = w.popen_big(o)
    time.sleep(0.5)
    t0 = time.time()
    while time.time() - t0 < 60 and not w.p(o).is_dir():
        time.sleep(0.05)
    second = w.cli("train", "--model", "ckpt", *w.BIG, "--out", o)
    first.communicate(timeout=600)
    ok, seen = one_line(second, 2, "another")
    return ok and first.returncode == 0 and w.p(o, "results.json").is_file(), f"second: {seen}; first exit " \
                                                                               f"{first.returncode}"


@attack("out-is-file", "folders", "--out names a file: one line before the model loads")
def _(w: World):
    w.p("a_file").write_text("x")
    r = w.train("a_file")
    return refused_early(r)


@attack("out-unwritable", "folders", "--out below a file (cannot be created): one line before the model loads")
def _(w: World):
    w.p("b_file").write_text("x")
    r = w.train("b_file/run")
    return refused_early(r)


@attack("eval-out-unwritable", "folders", "`eval --out` that cannot be written: one line before the model loads")
def _(w: World):
    w.p("c_file").write_text("x")
    r = w.cli("eval", "--model", "ckpt", "--task", "task", "--test-size", "4", "--no-progress", "--no-generation",
              "--out", "c_file/x")
    return refused_early(r)


# ---- 5. data ----------------------------------------------------------------------------------------
@attack("data-index-ids", "data", "train ids 0..23 and test ids 0..7 (each file numbers its rows): nothing dropped")
def _(w: World):
    o = w.out()
    r = w.train(o, "--train-size", "24", "--valid-size", "0", task="index_ids")
    n = json.loads(w.p(o, "results.json").read_text())["n_train"] if w.p(o, "results.json").is_file() else None
    return n == 24 and "note" in r.stderr, f"{_describe(r)}; n_train {n}" + ("; with a note" if "note" in r.stderr
                                                                              else "; no message")


@attack("data-same-ids", "data", "a file whose ids are all equal: the message names that cause")
def _(w: World):
    r = w.train(w.out(), task="same_ids")
    ok = "ids are not unique" in r.stderr
    return ok, _describe(r) + ("; names the repeated ids" if ok else "")


@attack("data-identical-options", "data", "a question with two identical options: reported, not silent")
def _(w: World):
    d = w.p("dup_opts")
    d.mkdir(exist_ok=True)
    for split in ("train", "test"):
        rows = [{"id": f"{split}{i}", "question": f"what is {split} {i} ?", "choices": ["red", "red"] if i == 0
                 else ["red", "blue"], "answer": "answer2" if i % 2 else "answer1"} for i in range(12)]
        (d / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    r = w.train(w.out(), "--train-size", "6", "--valid-size", "2", task="dup_opts")
    ok = "identical options" in r.stderr
    return ok, _describe(r) + ("; reported" if ok else "; accepted silently")


@attack("data-overlap", "data", "training rows repeating test questions: dropped with the count said")
def _(w: World):
    d = w.p("overlap")
    d.mkdir(exist_ok=True)
    test = [{"id": f"s{i}", "question": f"what is red {i} ?", "choices": ["red", "blue"], "answer": "answer1"}
            for i in range(8)]
    train = [{"id": f"t{i}", "question": f"what is red {i} ?" if i < 3 else f"what is blue {i} ?",
              "choices": ["red", "blue"], "answer": "answer2"} for i in range(24)]
    for name, rows in (("train", train), ("test", test)):
        (d / f"{name}.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    r = w.train(w.out(), task="overlap")
    ok = "3 of 24 training examples" in r.stderr
    return ok, _describe(r) + ("; count reported" if ok else "; no message")


@attack("data-bad-label", "data", "an answer naming a missing option: file and line, before the model loads")
def _(w: World):
    d = w.p("badlabel")
    d.mkdir(exist_ok=True)
    (d / "train.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "answer": "answer3"}\n')
    (d / "test.jsonl").write_text('{"question": "q2", "choices": ["a", "b"], "answer": "answer1"}\n')
    r = w.train(w.out(), task="badlabel")
    return refused_early(r, "line 1")


@attack("data-empty", "data", "an empty train file: one line")
def _(w: World):
    d = w.p("empty")
    d.mkdir(exist_ok=True)
    (d / "train.jsonl").write_text("")
    (d / "test.jsonl").write_text('{"question": "q2", "choices": ["a", "b"], "answer": "answer1"}\n')
    return one_line(w.train(w.out(), task="empty"))


@attack("data-train-size-0", "data", "`--train-size 0`: one line")
def _(w: World):
    return one_line(w.cli("train", "--model", "ckpt", "--task", "task", "--out", w.out(), "--train-size", "0"))


@attack("data-missing-task", "data", "a task folder that does not exist: one line")
def _(w: World):
    return one_line(w.train(w.out(), task="no_such_task_anywhere"))


# ---- 6. corruption ----------------------------------------------------------------------------------
def _saved_run(w: World) -> str:
    o = w.out()
    w.train(o)
    return o


def _eval(w: World, run: str, model: str = "ckpt", *extra: str) -> subprocess.CompletedProcess:
    return w.cli("eval", "--model", model, "--task", "task", "--run", run, "--train-size", "16", "--valid-size", "4",
                 "--test-size", "4", "--no-progress", "--no-generation", *extra)


@attack("edits-flipped", "corruption", "a flipped byte in edits.safetensors' data: refused in one line")
def _(w: World):
    o = _saved_run(w)
    p = w.p(o, "edits.safetensors")
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    p.write_bytes(bytes(data))
    return one_line(_eval(w, o), 2, "")


@attack("edits-truncated", "corruption", "a truncated edits.safetensors: refused in one line")
def _(w: World):
    o = _saved_run(w)
    p = w.p(o, "edits.safetensors")
    p.write_bytes(p.read_bytes()[:40])
    return one_line(_eval(w, o))


@attack("config-garbled", "corruption", "a jola_config.json that is not JSON: one line before the model loads")
def _(w: World):
    o = _saved_run(w)
    w.p(o, "jola_config.json").write_text("{not json")
    r = _eval(w, o)
    return refused_early(r)


def _own_cache(w: World, name: str) -> Path:
    """A copy of the tiny checkpoint marked as one of our converted caches (as a dequantised GGUF is)."""
    import shutil

    d = w.p(name)
    shutil.copytree(w.p("ckpt"), d)
    from jola_lens.loading import safetensors_digest  # (this checkout's; a checkout without digests ignores them)

    meta = {"source": "tiny", "format": 1,
            "digests": {f.name: safetensors_digest(f) for f in d.glob("*.safetensors")}}
    (d / "jola_lens_cache.json").write_text(json.dumps(meta))
    w.py(f"from jola_lens import load_model; load_model({str(d)!r}, verbose=False)")  # writes the TL cache
    return d


CACHE_CHECK = ("import sys, torch; from jola_lens import load_model; from jola_lens.loading import load_hf_dir\n"
               "m = load_model(sys.argv[1], verbose=False, kernel_layout=False)\n"
               "ref = load_model('ckpt', verbose=False, kernel_layout=False)\n"
               "print('EQUAL' if all(torch.equal(p, q) for p, q in zip(m.parameters(), ref.parameters())) else 'DIFF')")


def _cache_attack(w: World, damage: str) -> tuple[bool, str]:
    d = _own_cache(w, f"cache_{damage}")
    f = d / "tl_state_float32.safetensors"
    if not f.is_file():
        return False, "no TL cache was written"
    if damage == "flip":
        data = bytearray(f.read_bytes())
        data[-11] ^= 0xFF
        f.write_bytes(bytes(data))
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    r = subprocess.run([sys.executable, "-c", CACHE_CHECK, str(d)], cwd=w.root, env=w.env, capture_output=True,
                       text=True, timeout=600)
    r2 = subprocess.run([sys.executable, "-c", CACHE_CHECK, str(d)], cwd=w.root, env=w.env, capture_output=True,
                        text=True, timeout=600)
    ok = "EQUAL" in r.stdout and "rebuilding" in r.stderr and "EQUAL" in r2.stdout
    seen = ("rebuilt with a note, then loads the true weights" if ok else
            ("traceback" if "Traceback" in r.stderr else "loads") + (f", {r.stdout.strip()[-5:]} weights"
                                                                      if r.stdout.strip() else ""))
    return ok, seen


@attack("cache-flipped", "corruption", "a flipped byte in the converted-model cache: rebuilt with a one-line note")
def _(w: World):
    return _cache_attack(w, "flip")


@attack("cache-truncated", "corruption", "a truncated converted-model cache: rebuilt with a note, later runs fine")
def _(w: World):
    return _cache_attack(w, "truncate")


# ---- 7. double edits --------------------------------------------------------------------------------
@attack("nested-applied", "edits", "nested `with jola.applied():` (and `jola(x)` inside it) applies the edit once")
def _(w: World):
    r = w.py("import sys, torch; sys.path.append(" + repr(str(REPO)) + ")\n"
             "from jola_lens import load_model, JoLAModel; from tests.helpers import randomize\n"
             "m = load_model('ckpt', verbose=False); j = JoLAModel(m); randomize(j); j.eval()\n"
             "x = torch.tensor([[1, 2, 3]])\n"
             "with j.applied():\n    once = m(x)\n    with j.applied():\n        twice = m(x)\n    inner = j(x)\n"
             "print(torch.allclose(once, twice) and torch.allclose(once, inner))")
    return _verdict(r)


@attack("merge-in-applied", "edits", "`merge()` inside `applied()`: a hook-free copy with the edit once "
                                     "(`inplace=True` there refused)")
def _(w: World):
    r = w.py("import sys, torch; sys.path.append(" + repr(str(REPO)) + ")\n"
             "from jola_lens import load_model, JoLAModel; from tests.helpers import randomize\n"
             "m = load_model('ckpt', verbose=False); j = JoLAModel(m); randomize(j); j.eval()\n"
             "x = torch.tensor([[1, 2, 3]]); refused = False\n"
             "with j.applied():\n    hooked = m(x); mm = j.merge()\n    try:\n        j.merge(inplace=True)\n"
             "    except RuntimeError:\n        refused = True\n"
             "hooks = sum(len(h.fwd_hooks) for h in mm.hook_dict.values())"
             " + sum(len(q._forward_hooks) for q in mm.modules())\n"
             "print(refused and hooks == 0 and torch.allclose(mm(x), hooked, atol=1e-4))")
    return _verdict(r)


# ---- 8. identity ------------------------------------------------------------------------------------
@attack("identity-abs-path", "identity", "eval a run with the same checkpoint given by its absolute path: accepted")
def _(w: World):
    o = _saved_run(w)
    r = _eval(w, o, str(w.p("ckpt").resolve()))
    return r.returncode == 0, _describe(r)


@attack("identity-rel-path", "identity", "eval a run with the same checkpoint given as ./ckpt: accepted")
def _(w: World):
    o = _saved_run(w)
    r = _eval(w, o, "./ckpt")
    return r.returncode == 0, _describe(r)


@attack("identity-other-weights", "identity", "eval a run on another model of the same shapes: refused in one line")
def _(w: World):
    o = _saved_run(w)
    return one_line(_eval(w, o, "other"), 2, "another model")


@attack("identity-override", "identity", "... and accepted with --allow-other-model")
def _(w: World):
    o = _saved_run(w)
    r = _eval(w, o, "other", "--allow-other-model")
    return r.returncode == 0, _describe(r)


@attack("merge-loreft", "identity", "merge a LoReFT run (position dependent): one line")
def _(w: World):
    o = w.out()
    w.train(o, "--method", "loreft")
    return one_line(w.cli("merge", o, "--model", "ckpt", "--out", w.out()), 2, "position")


# ---- the run ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(REPO), help="the checkout the child processes import jola_lens from")
    ap.add_argument("--tag", default="after")
    ap.add_argument("--only", nargs="*", default=None, help="attack keys (prefixes) to run")
    ap.add_argument("--skip-bundled", action="store_true", help="leave out the attack on the bundled model")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    chosen = [a for a in ATTACKS if (not args.only or any(a.key.startswith(k) for k in args.only))
              and not (args.skip_bundled and a.key == "seed-bundled")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="jola-attack-") as tmp:
        w = World(Path(tmp), Path(args.repo).resolve())
        for a in chosen:
            t0 = time.time()
            try:
                held, seen = a.run(w)
            except Exception as e:  # an attack that crashes the harness counts as a failure of the library
                held, seen = False, f"{type(e).__name__}: {str(e)[:120]}"
            rows.append({"key": a.key, "group": a.group, "what": a.what, "held": bool(held), "observed": seen,
                         "seconds": round(time.time() - t0, 1)})
            print(f"{'held  ' if held else 'FAILED'} {a.key:28} {seen[:110]}", flush=True)
    held = sum(r["held"] for r in rows)
    summary = {"repo": str(args.repo), "tag": args.tag, "tried": len(rows), "held": held, "failed": len(rows) - held,
               "attacks": rows}
    out = Path(args.out) / f"attack_{args.tag}.json"
    if args.only and out.is_file():  # a partial rerun replaces its attacks' records in the stored run
        stored = json.loads(out.read_text())
        fresh = {r["key"]: r for r in rows}
        merged = [fresh.pop(r["key"], r) for r in stored["attacks"]] + list(fresh.values())
        held = sum(r["held"] for r in merged)
        summary = {**stored, "tried": len(merged), "held": held, "failed": len(merged) - held, "attacks": merged}
        rows = merged
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{args.tag}: tried {len(rows)}, held {held}, failed {len(rows) - held} (written to {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
