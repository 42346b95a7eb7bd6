"""The tiny models: deterministic, loadable, fast smaller than reasoning."""

from __future__ import annotations

import hashlib
import json

from tooling.models.tiny import TINY_MODELS, make_tiny_models


def _digest(path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.iterdir()))).hexdigest()


def test_make_tiny_is_deterministic(tmp_path):
    a = make_tiny_models(tmp_path / "a")
    b = make_tiny_models(tmp_path / "b")
    assert [_digest(p) for p in a] == [_digest(p) for p in b]


def test_models_have_chat_template_and_special_tokens(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    fast, medium, reasoning = make_tiny_models(tmp_path)
    tok = AutoTokenizer.from_pretrained(fast)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.decode(tok.encode("Hello world")) == "Hello world"
    cf, cm, cr = (AutoConfig.from_pretrained(p) for p in (fast, medium, reasoning))
    assert cf.architectures == ["Qwen2ForCausalLM"]
    assert cf.num_hidden_layers < cm.num_hidden_layers < cr.num_hidden_layers
    gen = json.loads((fast / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"]
    assert [s.name for s in TINY_MODELS] == ["tiny-fast", "tiny-medium", "tiny-reasoning"]
