"""The benchmark script runs and writes what it promises (structure only: timings are never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

MD_HEADER = "| measurement | value | target | result |"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    demo = out / "demo_results.json"
    demo.write_text(json.dumps({"demo_seconds": 123.4, "open_gates": {"additive": 5, "multiplicative": 7, "total": 12},
                                "train_seconds": 100.0, "train": {"steps": 75}}))
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out / "results"), "--demo-results", str(demo)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return out / "results", p.stdout


def test_quick_run_writes_every_required_key(quick_run):
    from benchmarks.run import REQUIRED_KEYS, TARGETS

    out, _ = quick_run
    res = json.loads((out / "latest.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in res, key
    for key in ("train_step_ratio", "hooked_forward_ratio", "merged_forward_ratio", "hooked_generate_ratio",
                "batched_eval_speedup", "train_peak_rss_mb", "eval_peak_rss_mb"):
        assert isinstance(res[key], float) and res[key] > 0, key
    assert res["quick"] is True
    assert isinstance(res["trainable_params"], int) and res["trainable_params"] > 0
    assert 0 < res["trainable_share"] < 1
    assert res["n_heads_total"] == res["n_layers"] * res["heads_per_layer"]
    assert res["demo_seconds"] == 123.4 and res["open_gates"]["total"] == 12
    assert set(res["passes"]) == set(TARGETS)
    assert all(v is None for v in res["passes"].values())  # a quick run judges no target


def test_quick_run_records_the_one_batch_training_peaks(quick_run):
    """Issue 25, item 4: the peak over training steps on one batch, hooked and hf backends and the plain HF
    floor, each in its own process, against the original code's figure (recorded, never a timing)."""
    from benchmarks.run import ORIGINAL_CODE_STEP_PEAK_MB, STEP_CHILDREN

    out, _ = quick_run
    res = json.loads((out / "latest.json").read_text())
    for kind in STEP_CHILDREN:
        r = res["rss"][kind]
        assert r["kind"] == kind and r["steps"] == 3 and r["batch_shape"][0] == 8
        assert r["peak_rss_mb"] >= r["peak_rss_after_load_mb"] > 0
    assert res["step_peak_rss_mb"] == res["rss"]["step_hooked"]["peak_rss_mb"]
    assert res["step_peak_rss_hf_floor_mb"] == res["rss"]["step_floor_hf"]["peak_rss_mb"]
    assert res["step_peak_rss_original_code_mb"] == ORIGINAL_CODE_STEP_PEAK_MB
    md = (out / "latest.md").read_text()
    assert "vs the original code's on the same batch" in md and "plain Hugging Face floor" in md


def test_quick_run_records_raw_timings_and_machine(quick_run):
    out, _ = quick_run
    res = json.loads((out / "latest.json").read_text())
    settings = res["settings"]
    expected = {
        "train_step_floor": settings["train_repeats"], "train_step_jola": settings["train_repeats"],
        "forward_base": settings["forward_repeats"], "forward_hooked": settings["forward_repeats"],
        "forward_merged": settings["forward_repeats"], "generate_base": settings["generate_repeats"],
        "generate_hooked": settings["generate_repeats"], "generate_merged": settings["generate_repeats"],
        "label_likelihood_batched": settings["likelihood_repeats"],
        "label_likelihood_single": settings["likelihood_repeats"],
    }
    for name, n in expected.items():
        t = res["timings"][name]
        assert len(t["repeats_s"]) == n >= 2, name
        assert t["median_s"] > 0
    for key in ("cpu_model", "cores", "torch_version", "torch_threads"):
        assert res["machine"][key] not in (None, ""), key
    for kind in ("train", "eval"):
        assert res["rss"][kind]["peak_rss_mb"] >= res["rss"][kind]["peak_rss_after_load_mb"] > 0


def test_quick_run_writes_and_prints_the_markdown_table(quick_run):
    out, stdout = quick_run
    md = (out / "latest.md").read_text()
    lines = md.splitlines()
    assert MD_HEADER in lines
    rows = [x for x in lines[lines.index(MD_HEADER) + 2 :] if x.startswith("|")]
    assert len(rows) >= 10
    assert all(x.count("|") == 5 for x in rows)
    text = "\n".join(rows)
    for needle in ("training step", "forward", "generation", "label-likelihood", "peak RSS", "trainable parameters",
                   "demo wall time"):
        assert needle in text, needle
    assert MD_HEADER in stdout


def test_demo_results_missing_gives_null_and_a_hint(tmp_path):
    from benchmarks.run import read_demo_results, resolve_demo_path

    r = read_demo_results(tmp_path / "nope.json")
    assert r["demo_seconds"] is None and "make demo" in r["note"]
    assert resolve_demo_path(None, quick=True) is None
    assert resolve_demo_path(str(tmp_path / "x.json"), quick=True) == tmp_path / "x.json"


def test_interleaved_alternates_order_and_shares_the_round():
    from benchmarks.run import interleaved

    calls = []
    times = interleaved({"a": lambda r: calls.append(("a", r)), "b": lambda r: calls.append(("b", r))}, repeats=3)
    assert calls == [("a", 0), ("b", 0), ("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert [len(v) for v in times.values()] == [3, 3]


def test_quick_run_records_the_batching_bound(quick_run):
    out, _ = quick_run
    gb = json.loads((out / "latest.json").read_text())["batched_eval_gemm_bound"]
    for name in ("single", "batched"):
        assert 0 < gb[f"gemm_s_{name}"] <= gb[f"total_cpu_s_{name}"]
    assert gb["ceiling"] == pytest.approx(gb["total_cpu_s_single"] / gb["gemm_s_batched"])
    assert gb["ceiling"] >= gb["cpu_speedup"] == pytest.approx(gb["total_cpu_s_single"] / gb["total_cpu_s_batched"])


def test_gemm_bound_separates_matrix_products_from_python_work():
    # No timing is compared, not even a share of one pass (CI once saw 0.510 against "< 0.5"): a pass without
    # matrix products records none, a pass with them records some, within the pass's CPU time.
    import torch

    from benchmarks.run import gemm_bound, profiled_cpu_seconds

    a = torch.randn(128, 128)

    def matmul_only(b: int) -> None:
        for _ in range(5):
            a @ a

    def no_products(b: int) -> None:
        x = torch.zeros(4)
        for _ in range(300):
            x = x + 1

    gemm, total = profiled_cpu_seconds(matmul_only, 1)
    assert 0 < gemm <= total
    gemm, total = profiled_cpu_seconds(no_products, 1)
    assert gemm == 0 and total > 0
    both = gemm_bound(matmul_only, 4)  # both passes profiled, and the ratios are those of the four numbers
    assert both["ceiling"] == pytest.approx(both["total_cpu_s_single"] / both["gemm_s_batched"])
    assert both["gemm_share_single"] == pytest.approx(both["gemm_s_single"] / both["total_cpu_s_single"])


def test_gemm_bound_arithmetic():
    from benchmarks.run import gemm_bound_from

    # one at a time: 2 s of products in 10 s; batched: the products take 1 s, everything 4 s
    r = gemm_bound_from((2.0, 10.0), (1.0, 4.0))
    assert r["gemm_share_single"] == pytest.approx(0.2)
    assert r["gemm_speedup"] == pytest.approx(2.0)
    assert r["cpu_speedup"] == pytest.approx(2.5)
    assert r["ceiling"] == pytest.approx(10.0)  # no batch size takes the 10 s below the 1 s of products
    assert r["ceiling"] >= r["cpu_speedup"]
    pure = gemm_bound_from((5.0, 5.0), (5.0, 5.0))  # nothing but products, and batching changes none of them
    assert pure["ceiling"] == pytest.approx(1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork + exec inheritance of ru_maxrss is Linux's")
def test_child_peak_rss_is_its_own_not_the_parents():
    import torch

    big = torch.ones(600 * 2**20 // 4)  # 600 MiB touched in this (parent) process
    code = "from benchmarks.run import peak_rss_mb; print(peak_rss_mb())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    child_peak = float(p.stdout.strip().splitlines()[-1])
    assert float(big[0]) == 1.0
    assert 0 < child_peak < 500  # the child imported torch, nothing more; ru_maxrss would report > 600


# ---- benchmarks.side_by_side (issue 25): structure and arithmetic, never a timing -----------------------
def test_side_by_side_quick_run_records_what_it_promises(tmp_path):
    from benchmarks.side_by_side import run

    res = run(quick=True, n=6, rounds=1, batch_size=4, out_dir=tmp_path)
    assert set(res["gemm"]["shapes"]) == {"d_model x d_mlp", "d_mlp x d_model", "d_model x d_model",
                                          "d_model x d_vocab"}
    assert res["gemm"]["peak_gflops"] == max(res["gemm"]["shapes"].values())
    s = res["scoring"]
    assert s["n_questions"] == 6 and s["flops"] > 0 and len(s["jola_lens"]["acc_picks"]) == 6
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        assert s["lm_eval_installed"] is False and "lm_eval" not in s
        assert "lm-eval not installed" in (tmp_path / "side_by_side.md").read_text()
    else:  # the same checkpoint and prompts through lm-evaluation-harness: the same picks
        assert s["lm_eval_installed"] is True and s["same_picks"] is True and s["max_abs_score_diff"] < 1e-3
    g = res["generation"]
    # jola_lens's KV-cache greedy decoding and transformers' generate make the same 16 tokens
    assert g["identical_tokens"] is True and g["rows_identical"] == g["n_prompts"] == 6
    # ... and so do the hooked backend with an (all-zero) JoLA edit attached, and the hf backend
    # ... and TransformerLens's own forward (the lean view off)
    assert g["variants"] == ["jola_lens", "jola_lens_edit_attached", "jola_lens_tl_forward", "jola_lens_hf_backend"]
    for name in g["variants"]:
        assert g[name]["identical_tokens"] is True and g[name]["rows_identical"] == 6 and g[name]["speed_ratio"] > 0
    assert s["jola_lens_tl_forward"]["acc_picks"] == s["jola_lens"]["acc_picks"]
    md = (tmp_path / "side_by_side.md").read_text()
    assert "JoLA edit attached" in md and "hf backend" in md and "JOLA_LENS_LEAN=0" in md
    saved = json.loads((tmp_path / "side_by_side.json").read_text())
    assert saved["scoring"]["flops"] == s["flops"]


def test_flop_count_of_scoring_is_written_out():
    from types import SimpleNamespace

    from benchmarks.side_by_side import block_params, forward_flops, scoring_flops

    cfg = SimpleNamespace(n_layers=2, n_heads=4, n_key_value_heads=2, d_head=8, d_model=32, d_mlp=48,
                          d_vocab=50, gated_mlp=True)
    per_layer = 32 * 8 * (2 * 4 + 2 * 2) + 32 * 48 * 3
    assert block_params(cfg) == 2 * per_layer
    # a prompt of 3 tokens and two options of 2 and 1 tokens: segments (3, 0), (1, 3), (0, 3); 3 reads
    expect = (3 + 1) * 2 * block_params(cfg)
    expect += 4 * 2 * 4 * 8 * ((3 * 0 + 3 * 4 // 2) + (1 * 3 + 1))
    expect += 2 * 32 * 50 * 3
    assert scoring_flops(cfg, [[1, 2, 3]], [[[4, 5], [6]]]) == expect
    assert forward_flops(cfg, [(3, 0)], 0) == 3 * 2 * block_params(cfg) + 4 * 2 * 4 * 8 * 6


# ---- benchmarks.gpu_check (issue 26): its dry run on the CPU, structure only ------------------------------
def test_gpu_check_dry_run_prints_its_table(tmp_path):
    p = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(tmp_path)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check_dry_run.json").read_text())
    (row,) = res["rows"]
    assert row["shape"] == "tiny" and row["edit_params"] > 0 and res["dtype"] == "bfloat16"
    for tag in ("plain", "ckpt"):
        assert row[f"jola_{tag}"]["median_s"] > 0 and row[f"floor_{tag}"]["median_s"] > 0
        assert row[f"ratio_{tag}"] > 0 and row[f"tokens_per_s_{tag}"] > 0
    md = (tmp_path / "gpu_check_dry_run.md").read_text()
    assert "| tiny |" in md and md in p.stdout and "DDP: one process" in md


def test_gpu_check_dry_run_under_torchrun_has_its_ddp_and_fsdp_rows(tmp_path):
    """2 gloo processes: the DDP row, and the FSDP row of a base built on the meta device and sharded, each
    rank holding about half of the weights."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(port), "-m", "benchmarks.gpu_check", "--dry-run", "--out",
                        str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check_dry_run_2proc.json").read_text())
    (ddp,), (fsdp,) = res["ddp"], res["fsdp"]
    assert ddp["world"] == fsdp["world"] == 2
    assert ddp["mean_step_s"] > 0 and fsdp["mean_step_s"] > 0 and fsdp["tokens_per_s"] > 0
    assert 0.5 <= fsdp["weights_held_share"] < 0.52
    md = (tmp_path / "gpu_check_dry_run_2proc.md").read_text()
    assert "GPUs (DDP)" in md and "GPUs (FSDP, checkpointing)" in md


def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the full check would run")
    p = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "use --dry-run" in p.stderr
