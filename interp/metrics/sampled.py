"""Sampled behaviour: generate k completions per prompt, score them, report a rate with CI.

- :func:`sample` draws ``k`` completions per prompt, seeded (the global RNG is restored
  afterwards), batched and left padded; it runs inside any intervention context, so the
  same call measures the steered or ablated model. ``engine=VLLMEngine(...)`` draws them
  through vLLM instead (:mod:`interp.metrics.vllm_engine`; base and LoRA adapters, no
  interventions); the config names the engine and its version.
- Scorers: matchers (:func:`exact_match`, :func:`regex_match`, :func:`prefix_match`) are
  plain ``str -> bool`` callables; a :class:`Judge` scores ``(prompt, completion)``.
  :class:`OpenAIJudge` calls any OpenAI-compatible ``/chat/completions`` endpoint named in
  the environment, with the standard library only; :class:`FakeJudge` is a local stand-in.
- :func:`sampled_rate` = sample + score: a :class:`RateResult` with the overall rate and
  per-prompt rates as 95% Wilson intervals, and the table of every scored completion.
- :func:`write_results` writes a table as CSV plus a JSON of the config beside it.

Samples of one prompt are not independent draws of the behaviour across prompts; the
overall interval treats every completion as one trial (report per-prompt rates too).
"""

from __future__ import annotations

import json
import numbers
import re
import urllib.error
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.errors import EmptyPromptsError, InterpError, JudgeError
from interp.execution import generate
from interp.metrics.judges import endpoint_settings, post_chat_completion
from interp.metrics.stats import Estimate, wilson
from interp.prompts import check_prompt

__all__ = [
    "Matcher",
    "Judge",
    "OpenAIJudge",
    "FakeJudge",
    "Samples",
    "RateResult",
    "exact_match",
    "regex_match",
    "prefix_match",
    "sample",
    "score",
    "sampled_rate",
    "write_results",
]

Matcher = Callable[[str], bool]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".,;:!?\"'").strip()).casefold()


def exact_match(answers: str | Sequence[str], *, normalize: bool = True) -> Matcher:
    """True when the completion's first line equals one of ``answers`` (case, space and
    surrounding punctuation ignored unless ``normalize=False``)."""
    items = [answers] if isinstance(answers, str) else list(answers)
    f = _norm if normalize else (lambda s: s)
    wanted = {f(a) for a in items}

    def match(completion: str) -> bool:
        lines = completion.strip().splitlines() or [""]
        return f(lines[0]) in wanted

    return match


def regex_match(pattern: str, flags: int = re.IGNORECASE) -> Matcher:
    """True when ``pattern`` is found anywhere in the completion (``re.search``)."""
    rx = re.compile(pattern, flags)
    return lambda completion: rx.search(completion) is not None


def prefix_match(prefixes: str | Sequence[str], *, normalize: bool = True) -> Matcher:
    """True when the completion starts with one of ``prefixes`` (leading space ignored)."""
    items = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    if normalize:
        items = [p.strip().casefold() for p in items]
    return lambda c: (c.lstrip().casefold() if normalize else c).startswith(tuple(items))


# ---- judges -------------------------------------------------------------------------
class Judge(ABC):
    """Scores one completion of one prompt: ``judge(prompt, completion) -> bool``."""

    @abstractmethod
    def __call__(self, prompt: str, completion: str) -> bool: ...


_DEFAULT_QUESTION = (
    "You grade one answer of an AI assistant.\n\nQuestion:\n{prompt}\n\nAnswer:\n{completion}"
    "\n\n{criterion}\nReply with exactly one word: YES or NO."
)


@dataclass
class OpenAIJudge(Judge):
    """A judge behind any OpenAI-compatible chat-completions endpoint.

    ``criterion`` is the yes/no question about the answer. ``model``, ``base_url`` and
    ``api_key`` default to ``INTERP_JUDGE_MODEL``, ``INTERP_JUDGE_BASE_URL`` (else
    ``OPENAI_BASE_URL``, else the OpenAI API) and ``INTERP_JUDGE_API_KEY`` (else
    ``OPENAI_API_KEY``). Temperature 0; the reply counts as True when it starts with "yes".
    """

    criterion: str
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    template: str = _DEFAULT_QUESTION
    timeout: float = 60.0
    max_tokens: int = 4
    replies: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.model, self.base_url, self.api_key = endpoint_settings(
            self.model, self.base_url, self.api_key
        )
        if not self.model:
            raise InterpError("OpenAIJudge needs model= or INTERP_JUDGE_MODEL in the environment")

    def __call__(self, prompt: str, completion: str) -> bool:
        text = self.template.format(prompt=prompt, completion=completion, criterion=self.criterion)
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        where = f"judge {self.model}@{self.base_url}"
        try:
            out = post_chat_completion(self.base_url, body, self.api_key, self.timeout)
            reply = out["choices"][0]["message"]["content"] or ""
        except urllib.error.HTTPError as e:
            raise JudgeError(f"{where}: HTTP {e.code} {e.reason}") from None
        except (OSError, ValueError) as e:  # unreachable, timed out, not JSON
            raise JudgeError(f"{where}: {e}") from None
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"{where}: a reply without choices[0].message") from None
        self.replies.append(reply)
        return reply.strip().casefold().startswith("yes")


@dataclass
class FakeJudge(Judge):
    """A local judge for tests and dry runs: ``fn(prompt, completion) -> bool``, logged."""

    fn: Callable[[str, str], bool]
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, prompt: str, completion: str) -> bool:
        self.calls.append((prompt, completion))
        return bool(self.fn(prompt, completion))


# ---- sampling -----------------------------------------------------------------------
@dataclass
class Samples:
    """``completions[i][j]``: sample ``j`` of prompt ``i``; ``config`` says how they were drawn."""

    prompts: list[str]
    completions: list[list[str]]
    config: dict


def _render(model, prompts) -> list[str]:
    out = []
    for p in prompts:
        out.append(p if isinstance(p, str) else model.chat(p))
    return out


def _check_sampling(*, k, max_new_tokens, temperature, top_p, batch_size) -> None:
    for name, value in (("k", k), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InterpError(f"{name} must be a positive integer (got {value!r})")
    if not (isinstance(temperature, numbers.Real) and 0 <= temperature < float("inf")):
        raise InterpError(f"temperature must be a finite number >= 0 (got {temperature!r})")
    if not (isinstance(top_p, numbers.Real) and 0 < top_p <= 1):
        raise InterpError(f"top_p must be in (0, 1] (got {top_p!r})")


def _hf_sample(model, texts, *, k, max_new_tokens, temperature, top_p, seed, batch_size):
    """``k`` completions per text through Hugging Face ``generate`` (any hooks active)."""
    import transformers

    rows = [t for t in texts for _ in range(k)]  # prompt-major: [n * k]
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=temperature > 0)
    if temperature > 0:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    out: list[str] = []
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        new = generate(model, rows, batch_size=batch_size, **gen_kwargs)
        out.extend(model.tokenizer.batch_decode(new, skip_special_tokens=True))
    completions = [out[i * k : (i + 1) * k] for i in range(len(texts))]
    return completions, {"engine": "hf", "engine_version": transformers.__version__}


def sample(
    model,
    prompts: Sequence[str] | Sequence[Sequence[dict]],
    *,
    k: int = 8,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    engine=None,
) -> Samples:
    """``k`` completions per prompt (strings, or chat message lists rendered with the
    template). ``temperature=0`` is greedy. Same arguments, same samples.

    ``engine=None`` samples with Hugging Face ``generate`` (inside any intervention);
    a :class:`~interp.metrics.vllm_engine.VLLMEngine` samples the same view of the model
    (base, or its adapter when enabled) through vLLM. ``model`` may also be a view of a
    vLLM engine (``engine.view(adapter)``). ``Samples.config`` names the engine.
    """
    _check_sampling(k=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    batch_size=batch_size)  # fmt: skip
    if isinstance(prompts, str):
        raise InterpError("sample() takes a list of prompts, not a single string")
    prompts = list(prompts)
    if not prompts:
        raise EmptyPromptsError("sample() needs at least one prompt")
    for i, p in enumerate(prompts):
        check_prompt(p, f"prompt {i}")
    if engine is not None:
        model = engine.view_for(model)
    texts = _render(model, prompts)
    kwargs = dict(
        k=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
    )
    if hasattr(model, "sample_texts"):
        completions, info = model.sample_texts(texts, **kwargs)
    else:
        completions, info = _hf_sample(model, texts, batch_size=batch_size, **kwargs)
    config = dict(model=model.name, variant=model.variant, **kwargs, **info)
    return Samples(texts, completions, config)


# ---- scoring ------------------------------------------------------------------------
@dataclass
class RateResult:
    """Share of completions scored True, overall and per prompt (95% Wilson intervals)."""

    rate: Estimate
    per_prompt: list[Estimate]
    rows: list[dict]  # prompt_index, sample_index, prompt, completion, score
    config: dict

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def save(
        self, directory: str | Path, config: dict | None = None, name: str = "samples"
    ) -> Path:
        summary = {
            "rate": self.rate.to_dict(),
            "per_prompt": [e.to_dict() for e in self.per_prompt],
        }
        return write_results(
            self.to_frame(),
            directory,
            name,
            config={**self.config, **(config or {})},
            summary=summary,
        )


def score(samples: Samples, scorer: Matcher | Judge, *, level: float = 0.95) -> RateResult:
    """Score every completion with a matcher (``completion``) or a :class:`Judge`."""
    judge = isinstance(scorer, Judge)
    rows, per = [], []
    for i, (prompt, comps) in enumerate(zip(samples.prompts, samples.completions, strict=True)):
        hits = 0
        for j, c in enumerate(comps):
            ok = bool(scorer(prompt, c) if isinstance(scorer, Judge) else scorer(c))
            hits += ok
            rows.append(dict(prompt_index=i, sample_index=j, prompt=prompt, completion=c, score=ok))
        per.append(wilson(hits, len(comps), level))
    total = sum(r["score"] for r in rows)
    name = type(scorer).__name__ if judge else getattr(scorer, "__name__", "matcher")
    return RateResult(
        wilson(total, len(rows), level), per, rows, {**samples.config, "scorer": name}
    )


def sampled_rate(model, prompts, scorer: Matcher | Judge, **sample_kwargs) -> RateResult:
    """:func:`sample` then :func:`score`: the rate of the behaviour with a Wilson interval."""
    return score(sample(model, prompts, **sample_kwargs), scorer)


def write_results(
    frame, directory: str | Path, name: str, *, config: dict, summary: dict | None = None
) -> Path:
    """Write ``{name}.csv`` and, beside it, ``{name}.json`` with the config (and a summary)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_csv(directory / f"{name}.csv", index=False)
    meta = {"config": config, **({"summary": summary} if summary is not None else {})}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str))
    return directory
