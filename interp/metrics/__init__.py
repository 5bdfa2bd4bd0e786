"""Behaviour as numbers: exact teacher-forced answer measures and sampled ones (k samples
per prompt scored by matchers or a judge, rates with Wilson intervals); evaluation sets
(:class:`EvalSet`: prompts, answer sets A and B, groups, one scorer); the paper's
prompt-template judges (:mod:`interp.metrics.judges`) and resumable judging of a table of
answers (:mod:`interp.metrics.evaluation`)."""

from interp.metrics.answers import answer_logprobs, answer_share, logit_diff, render_prompts
from interp.metrics.evalset import EvalItem, EvalSet, sampled_counts
from interp.metrics.evaluation import JudgeTask, judge_rows, rate_table, score_table
from interp.metrics.judges import (
    CallableJudge,
    EndpointJudge,
    JudgmentLog,
    LocalJudge,
    TemplateJudge,
)
from interp.metrics.sampled import (
    FakeJudge,
    Judge,
    OpenAIJudge,
    RateResult,
    Samples,
    exact_match,
    prefix_match,
    regex_match,
    sample,
    sampled_rate,
    score,
    write_results,
)
from interp.metrics.vllm_engine import VLLMEngine, check_adapter, merge_adapter

__all__ = [
    "answer_logprobs",
    "answer_share",
    "logit_diff",
    "render_prompts",
    "EvalItem",
    "EvalSet",
    "sampled_counts",
    "FakeJudge",
    "Judge",
    "OpenAIJudge",
    "RateResult",
    "Samples",
    "exact_match",
    "prefix_match",
    "regex_match",
    "sample",
    "sampled_rate",
    "score",
    "write_results",
    "CallableJudge",
    "EndpointJudge",
    "JudgmentLog",
    "LocalJudge",
    "TemplateJudge",
    "JudgeTask",
    "judge_rows",
    "rate_table",
    "score_table",
    "VLLMEngine",
    "check_adapter",
    "merge_adapter",
]
