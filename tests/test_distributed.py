"""Data-parallel training (issue 26): 2 processes on the gloo backend, started by torchrun (torch's own
launcher, what ``accelerate launch`` runs underneath) on this CPU machine, against one process.

2 ranks x batch 4 must follow 1 process x batch 8: the same edits and gates to float round-off (each rank
pads its own share; the matrix products add in another order). A rank killed mid-run fails the run and
leaves the last checkpoint, from which a relaunch finishes to the edits of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jola_lens.testing import save_tiny_checkpoint, write_task

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the largest difference allowed between 2 ranks and 1 process, edits and gate log-alphas (fp32)
TOL = 1e-5


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(ckpt: Path, task: Path, out: Path, epochs: int = 1) -> list[str]:
    return ["-m", "jola_lens.cli", "train", "--model", str(ckpt), "--data", str(task), "--out", str(out),
            "--batch-size", "8", "--epochs", str(epochs), "--no-progress", "--no-figures", "--no-generation",
            "--no-zero-shot", "--backend", "hf"]


def _torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port())]


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-4000:]
    return p


def _edits(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "edits.safetensors"))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    return save_tiny_checkpoint(d / "ckpt"), write_task(d / "task", n_train=44, n_test=8), d


def test_two_ranks_of_batch_4_follow_one_process_of_batch_8(tiny):
    ckpt, task, d = tiny
    one, two = d / "one", d / "two"
    _run([sys.executable] + _train_args(ckpt, task, one, epochs=2))
    p = _run(_torchrun(2) + _train_args(ckpt, task, two, epochs=2))
    a, b = _edits(one), _edits(two)
    assert any("log_alpha" in k for k in a)
    diff = _max_diff(a, b)
    assert diff < TOL, diff
    # the runs record the same trajectory: steps, validation losses, gate log
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (one, two))
    assert ra["train"]["steps"] == rb["train"]["steps"] == 2 * -(-ra["n_train"] // 8)  # 2 epochs of batch 8
    for ha, hb in zip(ra["train"]["history"], rb["train"]["history"]):
        assert abs(ha["valid_loss"] - hb["valid_loss"]) < 1e-5
    ga, gb = load_file(str(one / "gate_log.safetensors")), load_file(str(two / "gate_log.safetensors"))
    assert _max_diff(ga, gb) < 1e-4
    # rank 0 alone wrote the run folder and printed the results
    assert p.stdout.count('"open_gates"') == 1
    assert not (two / "checkpoint").exists()


def test_a_killed_rank_fails_the_run_and_the_checkpoint_resumes(tiny):
    ckpt, task, d = tiny
    full, cut = d / "full", d / "cut"
    epochs = 40
    _run(_torchrun(2) + _train_args(ckpt, task, full, epochs=epochs))
    launcher = subprocess.Popen(_torchrun(2) + _train_args(ckpt, task, cut, epochs=epochs), cwd=REPO_ROOT, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    latest = cut / "checkpoint" / "latest.json"
    deadline = time.time() + 300
    while not latest.is_file() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert latest.is_file(), "no checkpoint appeared"
    victim = _worker_pid(launcher.pid, rank=1)
    os.kill(victim, signal.SIGKILL)
    out, err = launcher.communicate(timeout=300)
    assert launcher.returncode != 0
    # the surviving rank says what happened and where the run can go on; torchrun names the dead worker
    assert "jola-lens: error: rank 0 of 2: another process of the group stopped during step" in err
    assert "is intact: relaunch the same command to resume from it" in err
    assert "exitcode: -9" in err
    step = json.loads(latest.read_text())["step"]
    assert 0 < step and not (cut / "results.json").exists()
    p = _run(_torchrun(2) + _train_args(ckpt, task, cut, epochs=epochs))
    assert "continuing the checkpoint" in p.stdout + p.stderr
    assert _max_diff(_edits(full), _edits(cut)) < TOL


def _worker_pid(launcher_pid: int, rank: int, timeout: float = 60.0) -> int:
    """The pid of torchrun's worker of ``rank`` (its environment says RANK=rank)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in _descendants(launcher_pid):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env and b"jola_lens.cli" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} under {launcher_pid}")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def test_device_map_across_cpu_and_disk_gives_the_unsharded_logits_and_gradients(tmp_path):
    """accelerate's big-model placement on the hf backend: layer 1 offloaded to disk, the rest on the CPU;
    the same JoLA edit gives the same logits, and a training step the same gradients."""
    from jola_lens import load_model
    from jola_lens.model import JoLAModel
    from jola_lens.train import answer_loss

    ckpt = save_tiny_checkpoint(tmp_path / "ckpt")
    whole = load_model(ckpt, backend="hf")
    placed = load_model(ckpt, backend="hf", offload_folder=tmp_path / "offload",
                        device_map={"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                                    "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"})
    # layer 1 really stays on disk (read from the checkpoint's safetensors file when it runs)
    assert placed.hf.hf_device_map["model.layers.1"] == "disk"
    assert all(p.device.type == "meta" for p in placed.hf.model.layers[1].parameters())
    tokens = torch.tensor([[1, 5, 9, 4, 7, 2], [3, 3, 8, 6, 1, 0]])
    labels = torch.full_like(tokens, -100)
    labels[:, -2:] = tokens[:, -2:]
    mask = torch.ones_like(tokens)
    grads, logits = [], []
    for model in (whole, placed):
        torch.manual_seed(0)
        jm = JoLAModel(model)
        with torch.no_grad():
            for p in jm.edit_parameters():
                p.add_(torch.randn_like(p) * 0.5)
        jm.eval()
        with torch.no_grad(), jm.applied():
            logits.append(model(tokens, attention_mask=mask))
        jm.train()
        torch.manual_seed(1)
        with jm.applied():
            loss = answer_loss(model, tokens, labels, mask)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in jm.named_edit_parameters()})
    assert float((logits[0] - logits[1]).abs().max()) < 1e-5
    assert _max_diff(grads[0], grads[1]) < 1e-5
    assert any(float(g.abs().max()) > 0 for g in grads[0].values())


def test_device_map_is_refused_off_the_hf_backend(tmp_path):
    from jola_lens import load_model
    from jola_lens.loading import ModelLoadError

    with pytest.raises(ModelLoadError, match="use backend='hf'"):
        load_model(save_tiny_checkpoint(tmp_path / "ckpt"), backend="bridge", device_map="auto")


def test_bundled_model_two_ranks_follow_one_process(tmp_path):
    """The same on the bundled SmolLM2 (hooked backend, the default): 16 training examples, 2 steps of
    global batch 8."""
    def args(out: Path) -> list[str]:
        return ["-m", "jola_lens.cli", "train", "--task", "demo", "--train-size", "16", "--valid-size", "8",
                "--test-size", "8", "--batch-size", "8", "--epochs", "1", "--out", str(out), "--no-progress",
                "--no-figures", "--no-generation", "--no-zero-shot", "--backend", "hooked"]

    _run([sys.executable] + args(tmp_path / "one"))
    _run(_torchrun(2) + args(tmp_path / "two"))
    a, b = _edits(tmp_path / "one"), _edits(tmp_path / "two")
    assert _max_diff(a, b) < TOL
    ra, rb = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("one", "two"))
    assert ra["train"]["steps"] == rb["train"]["steps"] == 2
    assert abs(ra["train"]["history"][0]["valid_loss"] - rb["train"]["history"][0]["valid_loss"]) < 1e-5


def _accelerate(n: int, fsdp: bool = False) -> list[str]:
    return ([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n), "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
            + (["--use_fsdp"] if fsdp else []))


def test_fsdp_under_accelerate_launch_shards_the_base_and_follows_one_process(tiny):
    """``accelerate launch --use_fsdp``: 2 processes on gloo, each holding half of every decoder layer
    (FSDP2), gradient checkpointing on, zero-shot and final scoring run by both ranks in step: the same
    edits, validation losses and accuracies as one unsharded process."""
    ckpt, task, d = tiny
    one, two = d / "fsdp_one", d / "fsdp_two"
    args = [a for a in _train_args(ckpt, task, one, epochs=2) if a not in ("--no-zero-shot", "--no-generation")]
    _run([sys.executable] + args)
    p = _run(_accelerate(2, fsdp=True) + [a if a != str(one) else str(two) for a in args]
             + ["--gradient-checkpointing"])
    assert _max_diff(_edits(one), _edits(two)) < TOL
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (one, two))
    for ha, hb in zip(ra["train"]["history"], rb["train"]["history"], strict=True):
        assert abs(ha["valid_loss"] - hb["valid_loss"]) < 1e-5
    for key in ("zero_shot", "jola"):
        assert rb[key]["likelihood_acc"] == ra[key]["likelihood_acc"]
        assert rb[key]["likelihood_acc_norm"] == ra[key]["likelihood_acc_norm"]
    # the frozen layers really are split: the printed share is well under the whole model
    line = next(x for x in p.stdout.splitlines() if x.startswith("[jola_lens] FSDP over 2 processes"))
    held, whole = (int(v.replace(",", "")) for v in
                   line.split("each holds ")[1].split(" weights")[0].split(" of the base's "))
    from jola_lens import load_model
    from jola_lens.distributed import local_share

    assert whole == local_share(load_model(ckpt, backend="hf"))[1]
    # rank 0's shard: the first ceil(rows / 2) rows of every weight (FSDP2 splits dim 0, the last rank short)
    base = load_model(ckpt, backend="hf")
    assert held == sum(-(-q.shape[0] // 2) * q[0].numel() for q in base.parameters()), (held, whole)
    assert held < 0.52 * whole
    # free generation is left to one process, and said so
    assert "scoring by likelihood only" in p.stdout + p.stderr
    assert "generation_acc" in ra["jola"] and "generation_acc" not in rb["jola"]
    assert p.stdout.count('"open_gates"') == 1


def test_fsdp_needs_a_launcher_and_the_hf_backend(tiny):
    ckpt, task, d = tiny
    for extra, message in ((["--fsdp"], "this is one process"),
                           (["--fsdp", "--backend", "hooked"], "--backend hooked cannot be sharded")):
        args = [a for a in _train_args(ckpt, task, d / "refused", epochs=1) if a not in ("--backend", "hf")]
        p = subprocess.run([sys.executable] + args + extra, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 2, p.stderr[-2000:]
        assert message in p.stderr
        assert not (d / "refused" / "results.json").exists()
