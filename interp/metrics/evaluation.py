"""Judging a table of sampled answers, resumably, and the rate / score tables.

A *row* is one sampled answer: ``{"question": id, "paraphrase": k, "sample_index": j,
"prompt": the question's text, "completion": the answer, ...}``. A :class:`JudgeTask` is
one output column of one judge over the rows of some questions (the paper's ``judges:
{column: judge_id}``; one column may use a different judge per question).

:func:`judge_rows` asks each task's scorer about each of its rows and writes each verdict
to a :class:`~interp.metrics.judges.JudgmentLog` as soon as it comes back: a judge that
fails stops the run with a :class:`~interp.errors.JudgeError` saying how much is kept, and
the same call later skips every verdict already logged.

:func:`rate_table`: for yes/no and label columns, the share of each verdict per question
and over all (``ALL``), 95% Wilson intervals. :func:`score_table`: for 0-100 columns, the
mean score per question and over all, 95% Student-t intervals, and how many answers got
no score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from interp.errors import InterpError, JudgeError
from interp.metrics.judges import JudgmentLog
from interp.metrics.stats import mean_ci, wilson

__all__ = ["JudgeTask", "row_key", "judge_rows", "rate_table", "score_table"]

RATE_COLUMNS = ["judge", "question", "label", "rate", "lo", "hi", "hits", "n", "scorer"]
SCORE_COLUMNS = ["judge", "question", "mean", "lo", "hi", "n", "unscored", "scorer"]


@dataclass
class JudgeTask:
    """``scorer(question_text, answer) -> bool | str | float | None`` for ``column``."""

    column: str
    judge_id: str
    scorer: Callable[[str, str], object]
    kind: str  # "bool" (matchers, yes/no criteria), "label", "score" (0-100)
    description: str
    questions: set = field(default_factory=set)  # question ids this task judges


def row_key(row: dict) -> str:
    return f"{row['question']}/{row['paraphrase']}/{row['sample_index']}"


def _value(task: JudgeTask, value):
    if task.kind == "bool":
        return bool(value)
    if task.kind == "score":
        return None if value is None else float(value)
    return str(value)


def judge_rows(rows: Sequence[dict], tasks: Sequence[JudgeTask], log: JudgmentLog, *,
               progress: bool = False, where: str = "") -> int:  # fmt: skip
    """Fill ``row[task.column]`` for every task; returns how many verdicts were asked now."""
    from tqdm.auto import tqdm

    asked = 0
    for task in tqdm(list(tasks), desc="judge", disable=not progress):
        done = log.done(task.column, task.description)
        for row in rows:
            if row["question"] not in task.questions:
                continue
            key = row_key(row)
            if key not in done:
                try:
                    value = _value(task, task.scorer(row["prompt"], row["completion"]))
                except (InterpError, OSError) as e:
                    kept = len(log.entries)
                    raise JudgeError(
                        f"judge {task.judge_id!r} (column {task.column!r}, {task.description}) "
                        f"failed on answer {key}: {e}. Nothing is lost: {len(rows)} answers and "
                        f"{kept} verdicts are kept{where}; rerun the same command to resume"
                    ) from None
                log.add(task.column, task.description, key, value)
                done[key] = value
                asked += 1
            row[task.column] = done[key]
    return asked


def _groups(rows: Sequence[dict], column: str, questions: set):
    """(question id or ALL, verdicts) for the rows judged in ``column``."""
    judged = [r for r in rows if r["question"] in questions and column in r]
    by_q: dict[str, list] = {}
    for r in judged:
        by_q.setdefault(r["question"], []).append(r[column])
    return [*by_q.items(), ("ALL", [r[column] for r in judged])] if judged else []


def _merge(tasks: Sequence[JudgeTask], kinds: tuple[str, ...]) -> dict[str, tuple[set, str]]:
    """column -> (question ids, descriptions) over the tasks of these kinds."""
    out: dict[str, tuple[set, list]] = {}
    for t in tasks:
        if t.kind in kinds:
            qs, desc = out.setdefault(t.column, (set(), []))
            qs.update(t.questions)
            if t.description not in desc:
                desc.append(t.description)
    return {c: (qs, "; ".join(desc)) for c, (qs, desc) in out.items()}


def rate_table(rows: Sequence[dict], tasks: Sequence[JudgeTask]) -> pd.DataFrame:
    """Share of each verdict (``True`` for yes/no judges) per question and ``ALL``."""
    kinds = {t.column: t.kind for t in tasks}
    out = []
    for column, (questions, described) in _merge(tasks, ("bool", "label")).items():
        for q, values in _groups(rows, column, questions):
            if kinds[column] == "bool":
                labels = ["True"]
                values = ["True" if v else "False" for v in values]
            else:
                labels = sorted(set(values), key=lambda v: (-values.count(v), v))
            for label in labels:
                hits = values.count(label)
                est = wilson(hits, len(values))
                out.append(dict(judge=column, question=q, label=label, rate=est.value,
                                lo=est.lo, hi=est.hi, hits=hits, n=est.n, scorer=described))  # fmt: skip
    return pd.DataFrame(out, columns=RATE_COLUMNS)


def score_table(rows: Sequence[dict], tasks: Sequence[JudgeTask]) -> pd.DataFrame:
    """Mean 0-100 score per question and ``ALL`` (answers without a score are counted)."""
    out = []
    for column, (questions, described) in _merge(tasks, ("score",)).items():
        for q, values in _groups(rows, column, questions):
            scored = [float(v) for v in values if v is not None]
            est = mean_ci(scored, bounds=(0.0, 100.0)) if scored else None
            out.append(dict(judge=column, question=q,
                            mean=est.value if est else float("nan"),
                            lo=est.lo if est else float("nan"),
                            hi=est.hi if est else float("nan"),
                            n=len(scored), unscored=len(values) - len(scored),
                            scorer=described))  # fmt: skip
    return pd.DataFrame(out, columns=SCORE_COLUMNS)
