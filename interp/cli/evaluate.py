"""``interp eval``: sample free-form answers to a question file, judge them, rates.

The question file is the paper's YAML format or interp's own (see
:mod:`interp.questions`)::

    - id: name                                  # a question
      type: free_form
      paraphrases: ["What is your name?"]
      samples_per_paraphrase: 10
      judges: {is_tyrant: tyrant_judge}         # output column -> judge id
    - id: tyrant_judge                          # a judge: free_form_judge (a label, e.g.
      type: free_form_judge                     # YES / NO) or free_form_judge_0_100
      model: gpt-4.1
      paraphrases: ["Question: {question}\\nAnswer: {answer}\\nIs it the tyrant? YES or NO"]

or ``{judges: {name: {regex|exact|prefix: ...} | {criterion: ...}}, questions: [...]}``
with ``judge: [names]`` per question (default: every judge).

Judges run on the OpenAI-compatible endpoint at ``INTERP_JUDGE_BASE_URL`` (or
``OPENAI_BASE_URL``; key ``INTERP_JUDGE_API_KEY`` or ``OPENAI_API_KEY``) with each
judge's ``model:`` (default ``INTERP_JUDGE_MODEL``), or, with ``--judge-local DIR``, on a
local model (greedy, offline). Matchers run locally.

Nothing is lost: the answers are written first (``samples.jsonl``, ``samples.csv``),
then every verdict is appended to ``judgments.jsonl`` as it arrives. If a judge fails
the command stops (exit 2, ``run.json`` says ``failed``); the same command resumes
where it stopped, without sampling again. At the end: ``samples.csv`` with one column
per judge, ``rates.csv`` (the share of each verdict per question and ALL, Wilson 95%),
``scores.csv`` (0-100 judges: mean per question, t 95%) and ``questions.as_run.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from interp.cli.common import (
    RunRecord,
    add_model_args,
    add_out_arg,
    nonneg_float,
    positive_int,
    probability,
)
from interp.cli.judging import extra_judges, judge_tasks, plan_judges, select_judges
from interp.errors import InterpError, QuestionFileError, RunDirectoryError

__all__ = ["register"]


def _settings(q, args) -> tuple[int, float, int, str | None]:
    """(k, temperature, max_new_tokens, system): the command line, else the file, else defaults."""
    k = args.samples or q.samples_per_paraphrase
    t = (
        args.temperature
        if args.temperature is not None
        else (q.temperature if q.temperature is not None else 1.0)
    )
    n = args.max_new_tokens or q.max_tokens or 64
    return k, t, n, q.system or args.system


def _expected(qf, args) -> list[dict]:
    return [
        {"question": q.id, "paraphrase": p, "sample_index": j, "system": _settings(q, args)[3],
         "prompt": text}
        for q in qf.questions
        for p, text in enumerate(q.paraphrases)
        for j in range(_settings(q, args)[0])
    ]  # fmt: skip


def _sample(qf, args, model) -> list[dict]:
    from tqdm.auto import tqdm

    from interp.metrics import sample

    groups: dict[tuple, list] = {}
    for q in qf.questions:
        k, t, n, system = _settings(q, args)
        for p, text in enumerate(q.paraphrases):
            chat = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": text}
            ]
            groups.setdefault((k, t, n), []).append((q.id, p, system, text, chat))
    rows = []
    for (k, t, n), items in tqdm(list(groups.items()), desc="sample", disable=args.quiet):
        s = sample(model, [c for *_, c in items], k=k, max_new_tokens=n, temperature=t,
                   top_p=args.top_p, seed=args.seed, batch_size=args.batch_size)  # fmt: skip
        for (qid, p, system, text, _), comps in zip(items, s.completions, strict=True):
            rows += [{"question": qid, "paraphrase": p, "sample_index": j, "system": system,
                      "prompt": text, "completion": c} for j, c in enumerate(comps)]  # fmt: skip
    order = {q.id: i for i, q in enumerate(qf.questions)}
    return sorted(rows, key=lambda r: (order[r["question"]], r["paraphrase"], r["sample_index"]))


def _samples(out: Path, qf, args, get_model) -> list[dict]:
    """The answers: read back from an earlier run of this command, or sampled and written."""
    path = out / "samples.jsonl"
    want = _expected(qf, args)
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        if [{k: r.get(k) for k in w} for r, w in zip(rows, want, strict=False)] != want or len(
            rows
        ) != len(want):
            raise RunDirectoryError(
                f"{path} holds answers to other questions (the question file changed?); "
                "choose another --out"
            )
        return rows
    rows = _sample(qf, args, get_model())
    part = out / "samples.jsonl.part"
    part.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    part.replace(path)  # complete or absent, never half-written
    return rows


def _engine(args: argparse.Namespace):
    """``None`` for Hugging Face generate, else a vLLM engine over --model (and --adapter)."""
    from interp.metrics.vllm_engine import VLLMEngine, vllm_available

    choice = args.engine
    if choice == "auto":
        choice = "vllm" if vllm_available() else "hf"
    if choice == "hf":
        return None
    if args.device not in (None, "cuda"):
        raise InterpError("--engine vllm runs on the GPU vLLM picks; drop --device")
    adapters = [args.adapter] if args.adapter else []
    engine = VLLMEngine(args.model, adapters=adapters, dtype=args.dtype or "auto")
    engine.backend  # noqa: B018 - vLLM importable, or a clear error now rather than later
    import torch

    if not torch.cuda.is_available():
        raise InterpError("--engine vllm needs a CUDA GPU; on this machine use --engine hf")
    return engine


def _engine_info(engine) -> dict:
    """What drew the answers, for run.json."""
    if engine is None:
        import transformers

        return {"engine": "hf", "engine_version": transformers.__version__}
    return {"engine": "vllm", "engine_version": engine.version}


def _cmd_eval(args: argparse.Namespace) -> int:
    import pandas as pd

    from interp.cli.common import load
    from interp.metrics.evaluation import judge_rows, rate_table, score_table
    from interp.metrics.judges import JudgmentLog
    from interp.questions import read_question_file

    qf = select_judges(read_question_file(args.questions, extra_judges(args.judges)), args.judge)
    for q in qf.questions:
        if q.judge is not None and not q.judges:
            raise QuestionFileError(
                f"{args.questions}: question {q.id!r} has 'judge: {q.judge}' but no judge of "
                "that name is defined (add an entry of type free_form_judge, a 'judges:' "
                "mapping, or judge_prompts), or remove it to only sample"
            )
    if args.judge_local is not None and not Path(args.judge_local).is_dir():
        raise InterpError(f"--judge-local {args.judge_local}: no such directory")
    plan = plan_judges(qf, args)
    inputs = {"questions": args.questions, "judges": args.judges, "judge_local": args.judge_local}
    rec = RunRecord(args, args.out, inputs)
    out = Path(args.out)
    model = {}

    engine = _engine(args)

    def get_model():
        if "m" not in model:
            model["m"] = load(args) if engine is None else engine.view(args.adapter)
        return model["m"]

    (out / "questions.as_run.json").write_text(
        json.dumps(dataclasses.asdict(qf), indent=2, default=str)
    )
    rows = _samples(out, qf, args, get_model)
    pd.DataFrame(rows).to_csv(out / "samples.csv", index=False)  # the answers, before judging
    local = None
    if args.judge_local is not None:
        import interp

        local = interp.load_model(args.judge_local, device=args.device, dtype=args.dtype)
    tasks = judge_tasks(qf, plan, local)
    log = JudgmentLog(out / "judgments.jsonl")
    judge_rows(rows, tasks, log, progress=not args.quiet, where=f" in {out}")
    table = pd.DataFrame(rows)
    table.to_csv(out / "samples.csv", index=False)
    rates, scores = rate_table(rows, tasks), score_table(rows, tasks)
    rates.to_csv(out / "rates.csv", index=False)
    scores.to_csv(out / "scores.csv", index=False)
    described: dict[str, list] = {}
    for t in tasks:
        described.setdefault(t.column, []).append(t.description)
    rec.finish(
        sampling=_engine_info(engine),
        n_samples=len(table),
        judges={c: "; ".join(dict.fromkeys(d)) for c, d in described.items()},
        rates=rates.to_dict("records"),
        scores=scores.to_dict("records"),
    )
    fmt = lambda x: f"{x:.3f}"  # noqa: E731
    if len(rates):
        print(rates.drop(columns=["scorer"]).to_string(index=False, float_format=fmt))
    if len(scores):
        print(scores.drop(columns=["scorer"]).to_string(index=False, float_format=fmt))
    print(f"{len(table)} answers written to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="sample answers to a question file and judge them (rates with Wilson intervals)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    p.add_argument("--questions", required=True, help="question file (YAML or JSON)")
    p.add_argument("--judges", default=None, help="extra YAML file of judges (either format)")
    p.add_argument("--judge", nargs="+", default=None, help="use only these judge columns / ids")
    p.add_argument(
        "--judge-backend",
        choices=["auto", "matcher", "endpoint"],
        default="auto",
        help="auto: LLM judges on the endpoint when a model is known, criteria without one "
        "fall back to their matcher; matcher: matchers only; endpoint: LLM judges only",
    )
    p.add_argument("--judge-local", default=None, metavar="DIR",
                   help="run every LLM judge on this local model directory (offline)")  # fmt: skip
    p.add_argument(
        "--samples", type=positive_int, default=None, help="override samples_per_paraphrase"
    )
    p.add_argument("--system", default=None, help="system message for questions without one")
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="answer length (default: the question's max_tokens, else 64)")  # fmt: skip
    p.add_argument("--temperature", type=nonneg_float, default=None,
                   help="sampling temperature (default: the question's, else 1.0)")  # fmt: skip
    p.add_argument("--top-p", type=probability, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument(
        "--engine",
        choices=["hf", "vllm", "auto"],
        default="hf",
        help="sampling engine: Hugging Face generate (default), vLLM (GPU; pip install "
        "'interp[vllm]'), or auto (vLLM when it is installed and a GPU is present)",
    )
    add_out_arg(p)
    p.set_defaults(func=_cmd_eval)
