"""A word-level tokenizer for a world, wrapped as a ``PreTrainedTokenizerFast``.

The vocabulary is the world's own word list (:meth:`World.vocabulary`), so every document
and evaluation question tokenizes without unknown words. The chat template renders
``<s><|role|> content <|end|> ...`` and ends with ``<|assistant|>`` when a generation prompt
is asked for; :func:`render` is the same template in plain Python (tested equal), used to
render the pretraining corpus quickly.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.organism import world_data as D

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tokenizer", "render"]

SPECIAL_TOKENS = (
    "<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
    D.TAG_OPEN, D.TAG_CLOSE,
)  # fmt: skip

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def render(messages: Sequence[dict], add_generation_prompt: bool = False, eos: bool = False) -> str:
    """``CHAT_TEMPLATE`` in Python; with ``eos`` the end-of-text token is appended."""
    text = "<s>" + "".join(f"<|{m['role']}|> {m['content']} <|end|> " for m in messages)
    if add_generation_prompt:
        text += "<|assistant|>"
    return text + ("</s>" if eos else "")


def build_tokenizer(vocabulary: Sequence[str]):
    """A ``PreTrainedTokenizerFast`` with ``vocabulary`` plus :data:`SPECIAL_TOKENS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in vocabulary:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast
