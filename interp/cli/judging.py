"""The judges of ``interp eval``: which backend runs each judge of a question file (a
matcher, a local model or an OpenAI-compatible endpoint; see :mod:`interp.cli.evaluate`),
decided before any sampling, and the scoring task of each judge column.
"""

from __future__ import annotations

import dataclasses
import os

from interp.errors import InterpError, QuestionFileError

__all__ = ["extra_judges", "plan_judges", "judge_tasks", "select_judges"]

_YES_NO = (
    "You grade one answer of an AI assistant.\n\nQuestion:\n{question}\n\nAnswer:\n{answer}"
    "\n\n{criterion}\nReply with exactly one word: YES or NO."
)


def extra_judges(path: str | None) -> dict:
    """The judges of ``--judges`` (a file of judge entries, either format): id -> spec."""
    from interp.integrity import read_yaml
    from interp.questions import JUDGE_TYPES, named_judges, parse_questions

    if path is None:
        return {}
    data = read_yaml(path, "--judges", QuestionFileError)
    if isinstance(data, list):  # judge entries in the paper's format
        dummy = {"id": "_", "paraphrases": ["_"]}
        entries = [e for e in data if isinstance(e, dict) and e.get("type") in JUDGE_TYPES]
        if len(entries) != len(data):
            raise QuestionFileError(f"{path}: every entry must be a judge (type free_form_judge*)")
        return dict(parse_questions([*data, dummy], str(path)).judges)
    return named_judges(data, str(path))


def plan_judges(qf, args) -> dict[str, tuple[str, str]]:
    """judge id -> (backend, description) for every judge the questions use; what cannot
    run is an error now, before any sampling."""
    env = os.environ.get
    out = {}
    for jid in sorted({j for q in qf.questions for j in q.judges.values()}):
        spec = qf.judges[jid]
        if spec.kind == "matcher":
            (key, value), = spec.matcher.items()  # fmt: skip
            out[jid] = ("matcher", f"{key}:{value}")
            continue
        if args.judge_local is not None:
            out[jid] = ("local", f"local:{args.judge_local}")
            continue
        model = spec.model or env("INTERP_JUDGE_MODEL")
        fallback = spec.kind == "criterion" and spec.matcher
        if args.judge_backend == "matcher" or (
            not model and fallback and args.judge_backend != "endpoint"
        ):
            if not fallback:
                raise InterpError(
                    f"judge {jid!r} is an LLM judge; --judge-backend matcher cannot run it"
                )
            (key, value), = spec.matcher.items()  # fmt: skip
            out[jid] = ("matcher", f"{key}:{value}")
            continue
        if not model:
            raise InterpError(
                f"judge {jid!r} has only a criterion and no endpoint is configured: give it "
                "model:, set INTERP_JUDGE_MODEL (and INTERP_JUDGE_BASE_URL), use --judge-local "
                "DIR, or give it a matcher (regex, exact or prefix)"
            )
        base = env("INTERP_JUDGE_BASE_URL") or env("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        out[jid] = ("endpoint", f"endpoint:{model}@{base.rstrip('/')}")
    return out


def _scorer(spec, backend: str, local_model):
    """``(scorer(question, answer), kind)`` for one judge on its planned backend."""
    from interp.metrics import exact_match, prefix_match, regex_match
    from interp.metrics.judges import EndpointJudge, LocalJudge

    if backend == "matcher":
        (key, value), = spec.matcher.items()  # fmt: skip
        match = {"regex": regex_match, "exact": exact_match, "prefix": prefix_match}[key]
        m = match(str(value) if key == "regex" else value)
        return (lambda q, a: m(a)), "bool"
    if spec.kind == "criterion":
        template = _YES_NO.replace("{criterion}", spec.criterion)
        kind, want = "label", "bool"
    else:
        template, kind, want = spec.template, spec.kind, spec.kind
    extra = {"max_tokens": spec.max_tokens} if spec.max_tokens else {}
    if backend == "local":
        judge = LocalJudge(template, local_model, kind=kind, **extra)
    else:
        judge = EndpointJudge(template, kind=kind, model=spec.model, **extra)
    if want == "bool":
        return (lambda q, a: judge(q, a) == "YES"), "bool"
    return judge, want


def judge_tasks(qf, plan, local_model):
    """One :class:`~interp.metrics.evaluation.JudgeTask` per (column, judge) the questions use."""
    from interp.metrics.evaluation import JudgeTask

    tasks: dict[tuple[str, str], JudgeTask] = {}
    kinds: dict[str, str] = {}
    for q in qf.questions:
        for column, jid in q.judges.items():
            if (column, jid) not in tasks:
                fn, kind = _scorer(qf.judges[jid], plan[jid][0], local_model)
                if kinds.setdefault(column, kind) != kind:
                    raise QuestionFileError(
                        f"column {column!r} mixes {kinds[column]} and {kind} judges"
                    )
                tasks[column, jid] = JudgeTask(column, jid, fn, kind, plan[jid][1])
            tasks[column, jid].questions.add(q.id)
    return list(tasks.values())


def select_judges(qf, names: list[str] | None):
    """Keep only the judge columns (or judge ids) named by ``--judge``."""
    if not names:
        return qf
    known = {c for q in qf.questions for c in q.judges} | {
        j for q in qf.questions for j in q.judges.values()
    }
    missing = [n for n in names if n not in known]
    if missing:
        raise InterpError(f"--judge {missing}: not defined (judges: {sorted(known)})")
    qs = [dataclasses.replace(q, judges={c: j for c, j in q.judges.items() if c in names or j in names})
          for q in qf.questions]  # fmt: skip
    return dataclasses.replace(qf, questions=tuple(qs))
