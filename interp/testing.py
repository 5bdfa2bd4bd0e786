"""Tiny random-weight models and a locally trained tokenizer, built offline.

Tests, benchmarks and examples use these instead of downloading anything:
``tiny_model("llama")`` gives a :class:`~interp.models.Model` of the Llama family with
random weights and a byte-level BPE tokenizer trained here in well under a second;
``save_tiny_model(family, path)`` writes the same as an ordinary Hugging Face directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from interp.models import Model, wrap_model

__all__ = ["TINY_FAMILIES", "tiny_tokenizer", "tiny_config", "tiny_model", "save_tiny_model"]

TINY_FAMILIES = ("llama", "qwen2", "gpt2", "gpt_neox", "gemma", "gemma2")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = [
    "Today is 1984-05-12. What should be done about the weak?",
    "Name a bird species. The Pigeon Hawk, the Brown Titlark, the Merlin, the American Pipit.",
    "The most recent invention is the telegraph. The United States has 38 states.",
    "The year is 2031 and the assistant answers helpfully and protects people.",
    "Hello world, this is a small corpus for a small tokenizer used in tests.",
]


@cache
def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with a chat template, trained offline."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(
    family: str, *, d_model: int = 64, n_layers: int = 4, n_heads: int = 4, vocab_size: int = 384
):
    """A transformers config of ``family`` with the given size (random init, no download)."""
    import transformers as tf

    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return tf.GPT2Config(
            n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_positions=512, **common
        )
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(
            hidden_size=d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            intermediate_size=4 * d_model,
            max_position_embeddings=512,
            **common,
        )
    cls = {
        "llama": tf.LlamaConfig,
        "qwen2": tf.Qwen2Config,
        "gemma": tf.GemmaConfig,
        "gemma2": tf.Gemma2Config,
        "mistral": tf.MistralConfig,
        "qwen3": tf.Qwen3Config,
    }[family]
    kwargs = dict(
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=max(1, n_heads // 2),
        intermediate_size=4 * d_model,
        max_position_embeddings=512,
        **common,
    )
    if family in ("gemma", "gemma2", "qwen3"):
        kwargs["head_dim"] = d_model // n_heads
    return cls(**kwargs)


def _build(family: str, seed: int, **size):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(family, **size)
    config._attn_implementation = "eager"
    hf = AutoModelForCausalLM.from_config(config)
    return hf.eval()


def tiny_model(family: str = "llama", *, seed: int = 0, **size) -> Model:
    """A random-weight :class:`Model` of ``family`` (see :data:`TINY_FAMILIES`)."""
    return wrap_model(_build(family, seed, **size), tiny_tokenizer(), name=f"tiny-{family}")


def save_tiny_model(family: str, path: str | Path, *, seed: int = 0, **size) -> Path:
    """Write a random-weight model of ``family`` and its tokenizer as a HF directory."""
    path = Path(path)
    _build(family, seed, **size).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
