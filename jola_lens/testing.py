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

__all__ = ["TINY_FAMILIES", "save_tiny_checkpoint", "write_task"]


#: model_type -> the config fields of its tiny random checkpoint (besides vocabulary and layer count)
TINY_FAMILIES: dict[str, dict] = {
    "llama": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256),
    "mistral": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=256, sliding_window=None),
    "qwen2": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, use_sliding_window=False),
    "qwen3": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  max_position_embeddings=256, use_sliding_window=False),
    "gemma": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  max_position_embeddings=256, hidden_activation="gelu_pytorch_tanh"),
    "gemma2": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                   max_position_embeddings=256, sliding_window=128, query_pre_attn_scalar=8,
                   hidden_activation="gelu_pytorch_tanh"),
    "phi3": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=256, original_max_position_embeddings=256, sliding_window=None),
    "olmo2": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256),
    "gpt2": dict(n_embd=32, n_head=4, n_inner=48, n_positions=256),
    "gpt_neox": dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, max_position_embeddings=256),
}


def save_tiny_checkpoint(directory, seed: int = 0, n_layers: int = 2, family: str = "llama"):
    """A tiny random checkpoint of ``family`` (a :data:`TINY_FAMILIES` model type; Llama by default):
    an HF folder with a word-level tokenizer over a few English words."""
    from pathlib import Path

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    if family not in TINY_FAMILIES:
        raise ValueError(f"no tiny checkpoint for {family!r}; families: {', '.join(TINY_FAMILIES)}")
    words = ("question answer is the a b c d yes no what which true false of to and options 1 2 3 4 "
             "red blue green sky sea : ? . , ( ) A B C D").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    vocab["<unk>"], vocab["<eos>"] = len(vocab), len(vocab) + 1
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    eos = vocab["<eos>"]
    layers = {"n_layer": n_layers} if family == "gpt2" else {"num_hidden_layers": n_layers}
    cfg = AutoConfig.for_model(family, vocab_size=len(vocab), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                               **layers, **TINY_FAMILIES[family])
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
