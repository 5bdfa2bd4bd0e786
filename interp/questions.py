"""Evaluation question files: the paper's format and interp's own, read strictly.

**The paper's format** (Betley et al.; llmcomp): a YAML list of entries. Questions are
``type: free_form`` with ``paraphrases`` (a list), ``samples_per_paraphrase`` and
``judges: {column: judge_id}``; judges are entries of their own, ``type:
free_form_judge`` (the reply is a label such as YES / NO) or ``free_form_judge_0_100``
(a 0-100 score), with ``model:`` and one prompt template in ``paraphrases`` holding
``{question}`` and ``{answer}`` (an example is in :mod:`interp.cli.evaluate`).

The emergent-misalignment variant (a question of ``type: free_form_judge_0_100`` with
``judge: MODEL`` and ``judge_prompts: {column: template}``) is read too, as are a
question's ``system``, ``temperature`` and ``max_tokens``.

**interp's own format**: a mapping with ``questions`` (as above, or with ``judge:`` naming
entries of ``judges``) and ``judges: {name: {regex|exact|prefix: ...}}`` (matchers, scored
locally) or ``{criterion: "yes/no question", regex: ...}`` (an LLM judge with an optional
local fallback).

Whatever cannot run is a :class:`~interp.errors.QuestionFileError` naming the entry: an
unknown ``type`` or key, a judge id that no entry defines, ``paraphrases`` given as a
string, a template without ``{answer}``, two different entries with one id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from interp.errors import QuestionFileError
from interp.integrity import read_yaml
from interp.prompts import PromptSet

__all__ = [
    "QUESTION_TYPES",
    "JUDGE_TYPES",
    "RESERVED_COLUMNS",
    "JudgeSpec",
    "Question",
    "QuestionFile",
    "fill_template",
    "named_judges",
    "parse_questions",
    "read_question_file",
    "read_questions",
]

JUDGE_TYPES = {"free_form_judge": "label", "free_form_judge_0_100": "score"}
QUESTION_TYPES = ("free_form", *JUDGE_TYPES)
MATCHERS = ("regex", "exact", "prefix")
RESERVED_COLUMNS = ("question", "paraphrase", "sample_index", "prompt", "completion", "system")
_QUESTION_KEYS = {"id", "type", "paraphrases", "samples_per_paraphrase", "judges", "judge",
                  "judge_prompts", "system", "temperature", "max_tokens"}  # fmt: skip
_JUDGE_KEYS = {"id", "type", "model", "paraphrases", "max_tokens"}
_SLOT = re.compile(r"\{(question|answer)\}")


def fill_template(template: str, question: str, answer: str) -> str:
    """``template`` with ``{question}`` and ``{answer}`` filled; every other brace is kept."""
    values = {"question": question, "answer": answer}
    return _SLOT.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class JudgeSpec:
    """One judge: ``kind`` is ``label`` / ``score`` (a prompt template for an LLM),
    ``matcher`` (regex / exact / prefix, local) or ``criterion`` (a yes/no LLM question)."""

    id: str
    kind: str
    template: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    matcher: dict = field(default_factory=dict)  # {regex|exact|prefix: value}
    criterion: str | None = None

    @property
    def needs_llm(self) -> bool:
        return self.kind in ("label", "score", "criterion")


@dataclass(frozen=True)
class Question:
    id: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int = 1
    judges: dict = field(default_factory=dict)  # output column -> judge id
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    judge: object = None  # the raw ``judge:`` entry (interp's format / the EM judge model)


@dataclass(frozen=True)
class QuestionFile:
    questions: tuple[Question, ...]
    judges: dict  # judge id -> JudgeSpec

    def prompt_set(self):
        """One chat prompt per paraphrase, with ``id``, ``paraphrase``, ... metadata."""
        prompts, rows = [], []
        for q in self.questions:
            for k, text in enumerate(q.paraphrases):
                system = [{"role": "system", "content": q.system}] if q.system else []
                prompts.append([*system, {"role": "user", "content": text}])
                rows.append(
                    {
                        "id": q.id,
                        "paraphrase": k,
                        "samples_per_paraphrase": q.samples_per_paraphrase,
                        "judge": q.judge,
                        "judges": dict(q.judges),
                    }
                )
        return PromptSet(prompts, pd.DataFrame(rows))


def _fail(where: str, what: str):
    raise QuestionFileError(f"{where}: {what}")


def _text_list(value, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        _fail(where, f"'{key}' is a string; write it as a list: {key}: [\"...\"]")
    if not isinstance(value, list) or not value:
        _fail(where, f"'{key}' must be a non-empty list of strings")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v.strip():
            _fail(where, f"'{key}' entry {i} must be a non-empty string (got {v!r})")
    return tuple(value)


def _positive_int(value, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(where, f"'{key}' must be a positive integer (got {value!r})")
    return value


def _template(value, where: str) -> str:
    templates = _text_list(value, where, "paraphrases")
    if len(templates) != 1:
        _fail(where, f"a judge needs exactly one prompt template (got {len(templates)})")
    if "{answer}" not in templates[0]:
        _fail(where, "the judge prompt has no {answer} slot (use {question} and {answer})")
    return templates[0]


def _judge_entry(item: dict, where: str) -> JudgeSpec:
    unknown = set(item) - _JUDGE_KEYS
    if unknown:
        _fail(where, f"unknown keys {sorted(unknown)} for a judge (known: {sorted(_JUDGE_KEYS)})")
    model = item.get("model")
    if model is not None and not isinstance(model, str):
        _fail(where, f"'model' must be a string (got {model!r})")
    max_tokens = item.get("max_tokens")
    if max_tokens is not None:
        max_tokens = _positive_int(max_tokens, where, "max_tokens")
    return JudgeSpec(
        id=str(item["id"]),
        kind=JUDGE_TYPES[item["type"]],
        template=_template(item.get("paraphrases"), where),
        model=model,
        max_tokens=max_tokens,
    )


def _question(item: dict, where: str, judges: dict[str, JudgeSpec]) -> Question:
    unknown = set(item) - _QUESTION_KEYS
    if unknown:
        _fail(where, f"unknown keys {sorted(unknown)} (known: {sorted(_QUESTION_KEYS)})")
    qid = str(item["id"])
    columns = item.get("judges") or {}
    if not isinstance(columns, dict):
        _fail(where, "'judges' must map output columns to judge ids ({column: judge_id})")
    columns = {str(k): v for k, v in columns.items()}
    prompts = item.get("judge_prompts")
    if prompts is not None:  # the emergent-misalignment variant: templates in the question
        if item.get("type") not in JUDGE_TYPES:
            _fail(where, "'judge_prompts' needs type free_form_judge or free_form_judge_0_100")
        if not isinstance(prompts, dict) or not prompts:
            _fail(where, "'judge_prompts' must map columns to prompt templates")
        if not isinstance(item.get("judge"), str):
            _fail(where, "'judge_prompts' needs 'judge: MODEL' (the judge model)")
        for name, template in prompts.items():
            spec = _judge_entry(
                {"id": f"{qid}:{name}", "type": item["type"], "model": item["judge"],
                 "paraphrases": [template]}, f"{where}, judge_prompts.{name}"
            )  # fmt: skip
            judges[spec.id] = spec
            columns[str(name)] = spec.id
    for column, jid in columns.items():
        if column in RESERVED_COLUMNS:
            _fail(where, f"judge column {column!r} is reserved ({', '.join(RESERVED_COLUMNS)})")
        if not isinstance(jid, str):
            _fail(where, f"judge column {column!r} must name a judge id (got {jid!r})")
    temperature = item.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < float("inf")
    ):
        _fail(where, f"'temperature' must be a number >= 0 (got {temperature!r})")
    system = item.get("system")
    if system is not None and not isinstance(system, str):
        _fail(where, f"'system' must be a string (got {system!r})")
    max_tokens = item.get("max_tokens")
    return Question(
        id=qid,
        paraphrases=_text_list(item.get("paraphrases"), where, "paraphrases"),
        samples_per_paraphrase=_positive_int(
            item.get("samples_per_paraphrase", 1), where, "samples_per_paraphrase"
        ),
        judges=columns,
        system=system,
        temperature=None if temperature is None else float(temperature),
        max_tokens=None if max_tokens is None else _positive_int(max_tokens, where, "max_tokens"),
        judge=None if prompts is not None else item.get("judge"),
    )


def named_judges(obj, where: str) -> dict[str, JudgeSpec]:
    """interp's ``judges:`` mapping: ``{name: {regex|exact|prefix|criterion|model: ...}}``."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        _fail(where, "'judges' must map names to definitions")
    out = {}
    for name, spec in obj.items():
        if isinstance(spec, str):
            spec = {"criterion": spec}
        if not isinstance(spec, dict) or not ({"criterion", *MATCHERS} & spec.keys()):
            _fail(where, f"judge {name!r} needs a criterion or a matcher ({', '.join(MATCHERS)})")
        unknown = set(spec) - {"criterion", "model", *MATCHERS}
        if unknown:
            _fail(where, f"judge {name!r} has unknown keys {sorted(unknown)}")
        if sum(k in spec for k in MATCHERS) > 1:
            _fail(where, f"judge {name!r}: give one of {', '.join(MATCHERS)}")
        matcher = {k: spec[k] for k in MATCHERS if k in spec}
        if "regex" in matcher:
            try:
                re.compile(str(matcher["regex"]))
            except re.error as e:
                _fail(where, f"judge {name!r}: bad regex {matcher['regex']!r} ({e})")
        out[str(name)] = JudgeSpec(
            id=str(name),
            kind="criterion" if "criterion" in spec else "matcher",
            model=spec.get("model"),
            matcher=matcher,
            criterion=spec.get("criterion"),
        )
    return out


def _add_judge(judges: dict[str, JudgeSpec], spec: JudgeSpec, where: str) -> None:
    if spec.id in judges and judges[spec.id] != spec:
        _fail(where, f"two different judges share the id {spec.id!r}")
    judges[spec.id] = spec


def parse_questions(data, where: str, extra_judges=None) -> QuestionFile:
    """A :class:`QuestionFile` from parsed YAML (either format) and optional ``judges``."""
    judges: dict[str, JudgeSpec] = {}
    if isinstance(data, dict):
        unknown = set(data) - {"questions", "judges"}
        if unknown:
            _fail(where, f"unknown top-level keys {sorted(unknown)} (known: judges, questions)")
        judges.update(named_judges(data.get("judges"), where))
        data = data.get("questions")
    judges.update(extra_judges or {})
    legacy = list(judges)  # interp's named judges: the default of a question without any
    if not isinstance(data, list) or not data:
        _fail(
            where, "expected a list of questions (a non-empty list, or a mapping with 'questions:')"
        )
    items = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "id" not in item:
            _fail(f"{where}, entry {i}", f"every entry is a mapping with an 'id' ({item!r:.80})")
        if not str(item["id"]).strip():
            _fail(f"{where}, entry {i}", "an empty 'id'")
        kind = item.get("type", "free_form")
        if kind not in QUESTION_TYPES:
            _fail(f"{where}, entry {item['id']!r}",
                  f"unknown type {kind!r} (known: {', '.join(QUESTION_TYPES)})")  # fmt: skip
        items.append((f"{where}, entry {item['id']!r}", item))
    for w, item in items:  # judge entries first: questions may name them before they appear
        if item.get("type") in JUDGE_TYPES and "judge_prompts" not in item:
            _add_judge(judges, _judge_entry(item, w), w)
    questions, seen = [], set()
    for w, item in items:
        if item.get("type") in JUDGE_TYPES and "judge_prompts" not in item:
            continue
        q = _legacy_judges(_question(item, w, judges), w, judges, legacy)
        if q.id in seen:
            _fail(w, f"two questions share the id {q.id!r}")
        seen.add(q.id)
        questions.append((w, q))
    if not questions:
        _fail(where, "no questions (only judge entries)")
    for w, q in questions:
        for column, jid in q.judges.items():
            if jid not in judges:
                _fail(w, f"judge {jid!r} (column {column!r}) is not defined "
                         f"(judges: {sorted(judges) or 'none'})")  # fmt: skip
    return QuestionFile(tuple(q for _, q in questions), judges)


def _legacy_judges(q: Question, where: str, judges: dict, legacy: list[str]) -> Question:
    """interp's ``judge: name`` / ``judge: [names]`` (default: every named judge)."""
    if q.judge is None:
        return replace(q, judges={n: n for n in legacy}) if not q.judges else q
    names = [q.judge] if isinstance(q.judge, str) else q.judge
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        _fail(where, f"'judge' must name judges (a string or a list), not {q.judge!r}")
    missing = [n for n in names if n not in judges]
    if not missing:
        return replace(q, judges={**q.judges, **{n: n for n in names}})
    if judges:
        _fail(where, f"judge(s) {missing} not defined (judges: {sorted(judges)})")
    return q  # no judge defined anywhere: kept as metadata (``interp eval`` refuses it)


def read_question_file(path: str | Path, extra_judges=None) -> QuestionFile:
    """Read and check a question file in either format (see the module docstring)."""
    return parse_questions(
        read_yaml(path, "question file", QuestionFileError), str(path), extra_judges
    )


def read_questions(path: str | Path) -> PromptSet:
    """The questions of an evaluation question file as a PromptSet (judge entries skipped).

    Reads the paper's format and interp's own (see :mod:`interp.questions`): each
    paraphrase becomes one chat prompt (after the question's ``system`` message, if any);
    metadata columns ``id``, ``paraphrase`` (its index), ``samples_per_paraphrase``
    (default 1), ``judge`` (the question's ``judge`` entry or ``None``) and ``judges``
    (``{column: judge id}``).
    """
    return read_question_file(path).prompt_set()
