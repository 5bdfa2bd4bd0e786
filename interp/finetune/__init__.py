"""Finetuning beside the flow: LoRA or full finetunes from chat JSONL, checked first.

=========  ==========================================================================
train      :class:`FinetuneConfig`, :func:`finetune`, :func:`encode_chat`
checks     what :func:`finetune` refuses before it trains, each with one clear line
=========  ==========================================================================
"""

from interp.finetune.train import FinetuneConfig, encode_chat, finetune

__all__ = ["FinetuneConfig", "finetune", "encode_chat"]
