"""The original `jola` quick-start (examples/run_jola.py) runs with only its import line changed."""

import pytest
import torch

import jola_lens
from jola_lens import JoLAConfig

pytestmark = pytest.mark.integration

QUICKSTART = '''
from transformers import AutoTokenizer, TrainingArguments, EarlyStoppingCallback
from jola_lens import JoLAConfig, JoLAModel, JoLATrainer, JoLADataset, make_data_collator

jola_config = JoLAConfig.get_jola_config(default=True)
jola_tokenizer = AutoTokenizer.from_pretrained(**jola_config["model_config"])
jola_tokenizer.padding_side = 'right'
jola_model = JoLAModel.jola_from_pretrained(**jola_config["model_config"])
jola_model.unfreeze_jola_params()
jola_model.model.train()
if jola_tokenizer.pad_token is None:
    jola_tokenizer.add_special_tokens({'pad_token': '[PAD]'})
    jola_model.resize_token_embeddings(jola_model.config.vocab_size + 1)
data_collator = make_data_collator(tokenizer=jola_tokenizer)
jola_dataset = JoLADataset(data_path=jola_config["data_config"]["data_path"])
jola_data = jola_dataset.data_from_file()
early_stopping_callback = EarlyStoppingCallback(
    early_stopping_patience=2,
    early_stopping_threshold=0.0
)
training_args = TrainingArguments(**jola_config["training_config"])
jola_trainer = JoLATrainer(
    jola_model,
    train_dataset=jola_data['train'],
    eval_dataset = jola_data['valid'],
    tokenizer=jola_tokenizer,
    data_collator = data_collator,
    args=training_args,
    callbacks=[early_stopping_callback],
    gate_scheduler=jola_config["jola_config"]["gate_scheduler"]
)
torch.autograd.set_detect_anomaly(True)
if not jola_config["jola_config"]["gate_scheduler"]:
    jola_trainer.gated_lambda = jola_config['training_config']["gate_lambda"]
jola_trainer.train()
'''


def test_original_quickstart_runs(tmp_path, monkeypatch):
    real = JoLAConfig.get_jola_config.__func__

    def small(cls, default=True, config_path=None):
        cfg = real(cls, default, config_path)
        # small settings so the test takes seconds: 8 train / 8 valid examples, one step
        cfg["training_config"].update(num_train_epochs=1, max_steps=2, warmup_steps=1,
                                      output_dir=str(tmp_path / "out"))
        cfg["data_config"]["train_size"] = 8
        return cfg

    monkeypatch.setattr(JoLAConfig, "get_jola_config", classmethod(small))
    monkeypatch.setattr(jola_lens.data.JoLADataset, "__init__",
                        _with_train_size(jola_lens.data.JoLADataset.__init__, 8))
    ns: dict = {"torch": torch}
    try:
        exec(compile(QUICKSTART, "run_jola_quickstart", "exec"), ns)
    finally:
        torch.autograd.set_detect_anomaly(False)
    trainer = ns["jola_trainer"]
    assert trainer.step == 1 and trainer.config.gate_schedule == "expon" and trainer.config.patience == 2
    assert (tmp_path / "out" / "edits.safetensors").is_file()
    jm = ns["jola_model"]
    assert all(not p.requires_grad for p in jm.model.parameters())


def _with_train_size(init, n):
    def wrapped(self, *a, **kw):
        kw["train_size"] = n
        init(self, *a, **kw)

    return wrapped
