"""Create small, random-weight Hugging Face causal LMs that vLLM loads for real.

Offline and deterministic: the tokenizer is trained on a fixed corpus and the
weights come from a seeded generator, so the same spec gives the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tooling.models.corpus import CORPUS

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, as Qwen2 uses it; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TinyModelSpec(BaseModel):
    """Shape of one tiny Qwen2 model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int = 4096
    vocab_size: int = 2048
    seed: int = 0


# Head size 64 in both: a size vLLM's CPU attention supports.
TINY_MODELS: tuple[TinyModelSpec, ...] = (
    TinyModelSpec(name="tiny-fast", hidden_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, intermediate_size=256, seed=1),
    # The middle rung of the three-tier example profile (local-cpu-3tier).
    TinyModelSpec(name="tiny-medium", hidden_size=192, num_hidden_layers=3,
                  num_attention_heads=3, num_key_value_heads=1, intermediate_size=384, seed=3),
    TinyModelSpec(name="tiny-reasoning", hidden_size=256, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, intermediate_size=512, seed=2),
)


def train_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer trained on the fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    return tokenizer


def _write_tokenizer(out: Path, vocab_size: int) -> int:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(vocab_size),
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return len(fast)


def make_model(spec: TinyModelSpec, out: Path) -> Path:
    """Write one model (config, weights, tokenizer) into `out/spec.name`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = out / spec.name
    path.mkdir(parents=True, exist_ok=True)
    vocab = _write_tokenizer(path, spec.vocab_size)
    ids = {tok: SPECIAL_TOKENS.index(tok) for tok in SPECIAL_TOKENS}
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=config.pad_token_id,
    ).save_pretrained(path)
    (path / "tierserve-tiny.json").write_text(json.dumps(spec.model_dump(), indent=2) + "\n")
    return path


def make_tiny_models(out: Path, specs: tuple[TinyModelSpec, ...] = TINY_MODELS) -> list[Path]:
    return [make_model(spec, out) for spec in specs]
