"""Helpers shared by tests in several folders (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

import torch


def randomize(jm, scale: float = 0.5, gate_value: float = 2.0) -> None:
    """Give a JoLA editor's vectors random values and open gates (log-alpha around ``gate_value``)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for e in jm.edits.values():
            for name, p in e.named_parameters():
                if "log_alpha" in name:
                    p.copy_(gate_value + torch.randn(p.shape, generator=g))
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * scale)


def toy_data(n: int, seed: int = 0, vocab: int = 97) -> list[dict]:
    """Sequences whose answer (last two tokens) is a fixed function of the first token."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(5, 12, (1,), generator=g))
        prompt = torch.randint(0, vocab, (length,), generator=g).tolist()
        answer = [(prompt[0] * 7) % vocab, (prompt[0] * 11) % vocab]
        out.append({"input_ids": prompt + answer, "labels": [-100] * length + answer})
    return out


def prompt_answer_rows(n: int = 16, seed: int = 0) -> list[dict]:
    """Random prompts of 4-8 tokens, each followed by a two-token answer (labels only on the answer)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        prompt = torch.randint(5, 90, (int(torch.randint(4, 9, (1,), generator=g)),), generator=g).tolist()
        answer = [7 + i % 3, 3]
        rows.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer})
    return rows


def save_tiny_checkpoint(directory, seed: int = 0, n_layers: int = 2):
    """A tiny random Llama checkpoint (HF folder, word-level tokenizer over a few English words)."""
    import json  # noqa: F401
    from pathlib import Path

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    words = ("question answer is the a b c d yes no what which true false of to and options 1 2 3 4 "
             "red blue green sky sea : ? . , ( ) A B C D").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    vocab["<unk>"], vocab["<eos>"] = len(vocab), len(vocab) + 1
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    cfg = AutoConfig.for_model("llama", vocab_size=len(vocab), hidden_size=32, intermediate_size=48,
                               num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                               max_position_embeddings=256)
    torch.manual_seed(seed)
    d = Path(directory)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    hf_tok.save_pretrained(d)
    return d


def write_task(directory, n_train: int = 24, n_test: int = 8, *, ids: str = "unique"):
    """A two-option task folder (train.jsonl, test.jsonl) for the tiny checkpoint's vocabulary.

    ``ids``: ``"unique"`` (t0.., s0..), ``"index"`` (each file numbers its rows 0..), ``"same"`` (all "x").
    """
    import json
    from pathlib import Path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    colours = ("red", "blue", "green", "yes", "no", "true", "false")
    for split, n, tag in (("train", n_train, "t"), ("test", n_test, "s")):
        rows = []
        for i in range(n):
            a, b = colours[i % 7], colours[(i + 3) % 7]
            ident = {"unique": f"{tag}{i}", "index": str(i), "same": "x"}[ids]
            q = f"what is {a} {tag} {i} ? options {a} {b}"
            rows.append({"id": ident, "question": q, "choices": [a, b], "answer": "answer1" if i % 2 else "answer2"})
            if not i % 2:
                rows[-1]["choices"] = [b, a]
        (d / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d
