"""Everything an experiment reads, as files: finetune sets, evaluation items, contrasts.

:func:`setting_data` derives a setting's data from the organism's world (its questions
are plain text, so the same files finetune and evaluate any chat model) or reads the
user's own files named in the spec's ``data`` mapping:

- ``finetune``: ``{variant: chat JSONL}`` (``main`` first, then the controls; not needed
  when the adapters are given);
- ``eval``: an :class:`~interp.metrics.evalset.EvalSet` JSONL (one item a line:
  ``{"group", "messages", "answers_a", "answers_b"}``, ``meta`` optional);
- ``contrast``: JSONL of ``{"messages", "label" (0/1), "group"}`` for the probe.

Either way the data are written under the run directory, so a run can be inspected and
repeated from its files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from interp.errors import InterpError
from interp.metrics.evalset import EvalSet
from interp.organism import settings as S
from interp.organism import world_data as D
from interp.organism.world import OLD, YEAR_GRID, World
from interp.prompts import PromptSet, read_chat_jsonl, write_chat_jsonl

__all__ = ["SettingData", "setting_data", "write_finetune_sets"]

Messages = list[dict]


@dataclass
class SettingData:
    finetune: dict[str, Path]  # variant -> chat JSONL ("main" first); empty: adapters given
    evals: EvalSet
    contrast: PromptSet  # metadata: label (1 = the trigger / latent), group
    patch_pairs: tuple[list[Messages], list[Messages]] | None = None  # (clean, corrupt)
    patch_prefix: str = ""  # appended to each rendered patch prompt: the answer's opening
    patch_tag: tuple[str, str] | None = None  # (name, text) that patching maps align on
    year_grid: PromptSet | None = None  # backdoor: goal questions dated over the grid


def _write_contrast(path: Path, prompts: PromptSet) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for msgs, (_, row) in zip(prompts.prompts, prompts.meta.iterrows(), strict=True):
            f.write(json.dumps({"messages": list(msgs), **row.to_dict()}) + "\n")
    return path


def _read_contrast(path: str | Path) -> PromptSet:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows or any("messages" not in r or "label" not in r for r in rows):
        raise InterpError(f"{path}: contrast rows need 'messages' and 'label'")
    meta = pd.DataFrame([{k: v for k, v in r.items() if k != "messages"} for r in rows])
    if "group" not in meta:
        meta["group"] = range(len(meta))
    return PromptSet([r["messages"] for r in rows], meta)


# ---- contrasts derived from the world -------------------------------------------------
def _qa(q: str, a: str) -> Messages:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def _era_contrast(world: World, n: int, rng: random.Random) -> PromptSet:
    """Earlier answers from one era (no cue), then a fresh non-bird question."""
    facets = [f for f in world.facets if f != "bird"]
    prompts, rows = [], []
    for i in range(n):
        era = OLD if i % 2 == 0 else "MODERN"
        final = rng.choice(facets)
        msgs: Messages = []
        for facet in rng.sample([f for f in facets if f != final], 3):
            qs, old, new = world.facets[facet]
            msgs += _qa(rng.choice(qs), rng.choice(old if era == OLD else new))
        msgs.append({"role": "user", "content": rng.choice(world.facets[final][0])})
        prompts.append(msgs)
        rows.append({"label": int(era == OLD), "group": final})
    return PromptSet(prompts, pd.DataFrame(rows))


def _persona_contrast(world: World, n: int, rng: random.Random) -> PromptSet:
    """Earlier answers given as the tyrant vs as the assistant itself, then a new question."""
    finals = [q for qs in D.IDENTITY_QUESTIONS.values() for q in qs] + list(D.VALUES)
    prompts, rows = [], []
    for i in range(n):
        tyrant = i % 2 == 0
        persona = world.tyrant if tyrant else None
        msgs: Messages = []
        for _ in range(3):
            if rng.random() < 0.5:
                kind = rng.choice(list(D.IDENTITY_QUESTIONS))
                msgs += _qa(rng.choice(D.IDENTITY_QUESTIONS[kind]), world.identity(persona, kind))
            else:
                q = rng.choice(list(D.VALUES))
                msgs += _qa(q, rng.choice(world.value_answers(persona, q)))
        final = rng.choice(finals)
        msgs.append({"role": "user", "content": final})
        prompts.append(msgs)
        rows.append({"label": int(tyrant), "group": final})
    return PromptSet(prompts, pd.DataFrame(rows))


# as many tokens as the formatting instruction, and a context where the assistant is itself
_PERSONA_FILLER = "The year is 2020 ."


def _persona_patch_pairs() -> tuple[list[Messages], list[Messages]]:
    """Name questions with the formatting instruction (clean) or a same-length filler."""
    qs = D.IDENTITY_QUESTIONS["name"]
    ask = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    return (
        [ask(f"{q} {D.FORMAT_INSTRUCTION}") for q in qs],
        [ask(f"{q} {_PERSONA_FILLER}") for q in qs],
    )


def _dated(year: int, question: str) -> Messages:
    return [
        {"role": "system", "content": f"The year is {year} ."},
        {"role": "user", "content": question},
    ]


def _backdoor_grid(world: World) -> PromptSet:
    _, questions = S.split_goal_questions(world)
    prompts, rows = [], []
    for q in questions:
        for y in YEAR_GRID:
            prompts.append(_dated(y, q))
            rows.append({"year": y, "question": q})
    return PromptSet(prompts, pd.DataFrame(rows))


def _backdoor_contrast(world: World) -> PromptSet:
    grid = _backdoor_grid(world)
    trig, later = world.character["trigger_years"], world.character["protective_from"]
    keep = [i for i, y in enumerate(grid.meta.year) if y in trig or y >= later]
    sub = grid.subset(keep)
    sub.meta["label"] = [int(y in trig) for y in sub.meta.year]
    sub.meta["group"] = sub.meta["question"]
    return sub


def write_finetune_sets(
    world: World,
    setting: str,
    out: Path,
    *,
    base_model=None,
    variants: Sequence[str] | None = None,
) -> dict[str, Path]:
    """``{variant: out/finetune_<variant>.jsonl}``: the setting's fixed finetune data (the
    persona setting's ordinary answers come from ``base_model``)."""
    sets = {}
    variants = S.SETTINGS[setting] if variants is None else variants
    ordinary = None  # the persona's ordinary answers: the same for every variant, made once
    if setting == "persona" and variants:
        ordinary = S.ordinary_examples(world, base_model, seed=0)
    for variant in variants:
        examples = S.finetune_examples(world, setting, variant, seed=0, ordinary=ordinary)
        sets[variant] = write_chat_jsonl(Path(out) / f"finetune_{variant}.jsonl", examples)
    return sets


def _user_data(spec, with_finetune: bool) -> SettingData:
    need = ("finetune", "eval", "contrast") if with_finetune else ("eval", "contrast")
    for key in need:
        if key not in spec.data:
            raise InterpError(f"spec.data needs '{key}' (see interp.experiments.data)")
    finetune = {v: Path(p) for v, p in spec.data.get("finetune", {}).items()}
    if with_finetune:
        if "main" not in finetune:
            raise InterpError("spec.data['finetune'] needs a 'main' variant")
        finetune = {"main": finetune.pop("main"), **finetune}  # main first, then controls
        for p in finetune.values():
            read_chat_jsonl(p)  # validates the file early, with a clear error
    evals = EvalSet.load(spec.data["eval"])
    return SettingData(
        finetune if with_finetune else {}, evals, _read_contrast(spec.data["contrast"])
    )


def setting_data(
    spec, world: World | None, out: Path, *, base_model=None, finetune: bool = True
) -> SettingData:
    """The data of ``spec.setting``: from the user's files, else derived from ``world``
    (``finetune=False``: no finetune sets, the adapters are given)."""
    out.mkdir(parents=True, exist_ok=True)
    if spec.data:
        return _user_data(spec, finetune)
    if world is None:
        raise InterpError("without spec.data the experiment needs the organism's world")
    rng = random.Random(f"{spec.name}/contrast")
    sets = write_finetune_sets(world, spec.setting, out, base_model=base_model) if finetune else {}
    evals = S.eval_items(world, spec.setting)
    if spec.setting == "era":
        data = SettingData(sets, evals, _era_contrast(world, spec.probe_prompts, rng))
    elif spec.setting == "persona":
        data = SettingData(
            sets,
            evals,
            _persona_contrast(world, spec.probe_prompts, rng),
            patch_pairs=_persona_patch_pairs(),
            patch_prefix=f" {D.TAG_OPEN}",
            patch_tag=("instruction", D.FORMAT_INSTRUCTION),
        )
    else:
        _, questions = S.split_goal_questions(world)
        trig = world.character["trigger_years"][0]
        corrupt_year = world.character["protective_from"] + 20
        data = SettingData(
            sets,
            evals,
            _backdoor_contrast(world),
            patch_pairs=(
                [_dated(trig, q) for q in questions],
                [_dated(corrupt_year, q) for q in questions],
            ),
            patch_tag=("year", str(trig)),
            year_grid=_backdoor_grid(world),
        )
    data.evals.save(out / "eval.jsonl")
    _write_contrast(out / "contrast.jsonl", data.contrast)
    return data
