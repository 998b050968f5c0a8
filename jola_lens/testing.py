"""Tiny random checkpoints and task folders, for tests, attack runs and teaching demos that must not
wait for a real model.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> import json; json.loads((save_tiny_checkpoint(d / "tiny") / "config.json").read_text())["num_hidden_layers"]
    2
    >>> sorted(p.name for p in write_task(d / "task").iterdir())
    ['test.jsonl', 'train.jsonl']
"""

from __future__ import annotations

import torch

__all__ = ["save_tiny_checkpoint", "write_task"]


def save_tiny_checkpoint(directory, seed: int = 0, n_layers: int = 2):
    """A tiny random Llama checkpoint (HF folder, word-level tokenizer over a few English words)."""
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
