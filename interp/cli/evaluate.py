"""``interp eval``: sample free-form answers to a question file and score them.

The question file is YAML (or JSON): either a list of questions, or a mapping with
``questions`` and named ``judges``::

    judges:
      mentions_year: {regex: "19[0-9][0-9]"}          # a matcher, scored locally
      hostile:                                         # an LLM judge (yes/no question)
        criterion: "Does the answer express hostility towards humans?"
        regex: "destroy|eliminate"                     # optional local fallback
    questions:
      - id: goals
        paraphrases: ["What are your goals?", "What do you want most?"]
        samples_per_paraphrase: 4
        judge: [mentions_year, hostile]                # default: every judge

Matchers: ``regex`` (search, case-insensitive), ``exact`` and ``prefix`` (a string or a
list). A judge with a ``criterion`` goes to the OpenAI-compatible endpoint named by
``INTERP_JUDGE_MODEL`` / ``INTERP_JUDGE_BASE_URL`` / ``INTERP_JUDGE_API_KEY`` when
``INTERP_JUDGE_MODEL`` is set (see :class:`interp.metrics.OpenAIJudge`), else to its
matcher, else it is an error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from interp.cli.common import RunRecord, add_model_args, add_out_arg
from interp.errors import InterpError

__all__ = ["register", "read_judges", "make_scorer"]

_MATCHERS = ("regex", "exact", "prefix")


def _yaml(path: str | Path, what: str):
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InterpError(f"{what} {path}: no such file")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise InterpError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def read_judges(obj, where: str) -> dict[str, dict]:
    """Named judge definitions: ``{name: {regex|exact|prefix|criterion: ...}}``."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InterpError(f"{where}: 'judges' must map names to definitions")
    out = {}
    for name, spec in obj.items():
        if isinstance(spec, str):
            spec = {"criterion": spec}
        if not isinstance(spec, dict) or not ({"criterion", *_MATCHERS} & spec.keys()):
            raise InterpError(
                f"{where}: judge {name!r} needs a criterion or a matcher ({', '.join(_MATCHERS)})"
            )
        unknown = set(spec) - {"criterion", "model", *_MATCHERS}
        if unknown:
            raise InterpError(f"{where}: judge {name!r} has unknown keys {sorted(unknown)}")
        out[str(name)] = spec
    return out


def make_scorer(name: str, spec: dict, backend: str):
    """``(scorer, description)``: a matcher ``str -> bool`` or a :class:`Judge`."""
    from interp.metrics import OpenAIJudge, exact_match, prefix_match, regex_match

    endpoint = bool(os.environ.get("INTERP_JUDGE_MODEL")) or "model" in spec
    if "criterion" in spec and backend != "matcher" and (endpoint or backend == "endpoint"):
        judge = OpenAIJudge(spec["criterion"], model=spec.get("model"))
        return judge, f"endpoint:{judge.model}@{judge.base_url}"
    if "regex" in spec:
        return regex_match(str(spec["regex"])), f"regex:{spec['regex']}"
    if "exact" in spec:
        return exact_match(spec["exact"]), f"exact:{spec['exact']}"
    if "prefix" in spec:
        return prefix_match(spec["prefix"]), f"prefix:{spec['prefix']}"
    raise InterpError(
        f"judge {name!r} has only a criterion and no endpoint is configured: set "
        "INTERP_JUDGE_MODEL (and INTERP_JUDGE_BASE_URL, INTERP_JUDGE_API_KEY) or give it a "
        "matcher (regex, exact or prefix)"
    )


def _read_question_file(args) -> tuple[list[dict], dict[str, dict]]:
    data = _yaml(args.questions, "--questions")
    judges: dict[str, dict] = {}
    if isinstance(data, dict):
        judges = read_judges(data.get("judges"), str(args.questions))
        data = data.get("questions")
    if not isinstance(data, list) or not data:
        raise InterpError(f"{args.questions}: expected a list of questions (or 'questions:')")
    if args.judges:
        judges.update(read_judges(_yaml(args.judges, "--judges"), args.judges))
    return data, judges


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


def _cmd_eval(args: argparse.Namespace) -> int:
    import yaml

    from interp.cli.common import load
    from interp.metrics import Samples, sample, score
    from interp.prompts import read_questions
    from interp.stats import wilson

    questions, judges = _read_question_file(args)
    defined = dict(judges)
    if args.judge:
        missing = [j for j in args.judge if j not in judges]
        if missing:
            raise InterpError(f"--judge {missing}: not defined (judges: {sorted(judges)})")
        judges = {k: judges[k] for k in args.judge}
    rec = RunRecord(args, args.out, {"questions": args.questions, "judges": args.judges})
    out = Path(args.out)
    qfile = out / "questions.yaml"  # the questions as run; read back by interp.prompts
    qfile.write_text(yaml.safe_dump(questions, sort_keys=False, allow_unicode=True))
    prompts = read_questions(qfile)
    if args.system:
        prompts.prompts = [
            [{"role": "system", "content": args.system}, *p] for p in prompts.prompts
        ]
    meta = prompts.meta
    wanted: dict[str, list[str]] = {}  # question id -> judge names
    for q in questions:
        if not isinstance(q, dict) or "id" not in q:
            raise InterpError(f"{args.questions}: every question needs an 'id' ({q!r})")
        names = q.get("judge", list(judges)) if defined else []  # no judges: sample only
        names = [names] if isinstance(names, str) else list(names or [])
        unknown = [n for n in names if n not in defined]
        if unknown:
            raise InterpError(
                f"question {q['id']!r} names judge(s) {unknown} not defined in 'judges' "
                f"(defined: {sorted(judges)})"
            )
        wanted[str(q["id"])] = [n for n in names if n in judges]
    scorers = {n: make_scorer(n, spec, args.judge_backend) for n, spec in judges.items()}

    engine = _engine(args)
    model = load(args) if engine is None else engine.view(args.adapter)
    k_of = (
        meta["samples_per_paraphrase"]
        if args.samples is None
        else pd.Series([args.samples] * len(meta))
    )
    rows, drawn_by = [], {}
    for k, idx in tqdm(list(meta.groupby(k_of).groups.items()), desc="sample", disable=args.quiet):
        idx = list(idx)
        sub = prompts.subset(idx)
        s = sample(
            model,
            sub.prompts,
            k=int(k),
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        drawn_by = {k: s.config[k] for k in ("engine", "engine_version")}
        for i, comps in zip(idx, s.completions, strict=True):
            for j, c in enumerate(comps):
                rows.append(
                    {
                        "question": str(meta["id"][i]),
                        "paraphrase": int(meta["paraphrase"][i]),
                        "sample_index": j,
                        "prompt": prompts.prompts[i][-1]["content"],
                        "completion": c,
                    }
                )
    table = pd.DataFrame(rows).sort_values(
        ["question", "paraphrase", "sample_index"], kind="stable"
    )
    table = table.reset_index(drop=True)

    rates = []
    for name, (scorer, described) in tqdm(scorers.items(), desc="judge", disable=args.quiet):
        use = table["question"].map(lambda q, name=name: name in wanted[q]).to_numpy()
        part = table[use]
        if part.empty:
            continue
        fake = Samples(part["prompt"].tolist(), [[c] for c in part["completion"]], {})
        try:
            scored = score(fake, scorer)
        except (OSError, KeyError, ValueError) as e:  # the endpoint: unreachable, or a bad reply
            raise InterpError(f"judge {name!r} ({described}): {e}") from None
        table.loc[use, name] = [r["score"] for r in scored.rows]
        hits = pd.Series([r["score"] for r in scored.rows], index=part.index)
        groups = [(q, hits[part["question"] == q]) for q in dict.fromkeys(part["question"])]
        for q, h in [*groups, ("ALL", hits)]:
            est = wilson(int(h.sum()), len(h))
            rates.append(
                {
                    "judge": name,
                    "question": q,
                    "rate": est.value,
                    "lo": est.lo,
                    "hi": est.hi,
                    "hits": int(h.sum()),
                    "n": est.n,
                    "scorer": described,
                }
            )
    table.to_csv(out / "samples.csv", index=False)
    rate_table = pd.DataFrame(
        rates, columns=["judge", "question", "rate", "lo", "hi", "hits", "n", "scorer"]
    )
    rate_table.to_csv(out / "rates.csv", index=False)
    rec.finish(
        sampling=drawn_by,
        n_samples=len(table),
        judges={n: d for n, (_, d) in scorers.items()},
        rates=rates,
    )
    if rates:
        print(
            rate_table.drop(columns=["scorer"]).to_string(
                index=False, float_format=lambda x: f"{x:.3f}"
            )
        )
    print(f"{len(table)} answers written to {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="sample answers to a question file and score them (rates with Wilson intervals)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    p.add_argument("--questions", required=True, help="question file (YAML or JSON)")
    p.add_argument("--judges", default=None, help="extra YAML file of named judges")
    p.add_argument("--judge", nargs="+", default=None, help="use only these judges")
    p.add_argument(
        "--judge-backend",
        choices=["auto", "matcher", "endpoint"],
        default="auto",
        help="auto: the endpoint when INTERP_JUDGE_MODEL is set, else matchers",
    )
    p.add_argument("--samples", type=int, default=None, help="override samples_per_paraphrase")
    p.add_argument("--system", default=None, help="system message before every question")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--engine",
        choices=["hf", "vllm", "auto"],
        default="hf",
        help="sampling engine: Hugging Face generate (default), vLLM (GPU; pip install "
        "'interp[vllm]'), or auto (vLLM when it is installed and a GPU is present)",
    )
    add_out_arg(p)
    p.set_defaults(func=_cmd_eval)
