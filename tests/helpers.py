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


from jola_lens.testing import save_tiny_checkpoint, write_task  # noqa: E402,F401  (their home is the library)
