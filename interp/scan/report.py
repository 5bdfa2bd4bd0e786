"""A scan's output: ``scan.json`` (the shape the issue fixes), ``report.md`` and figures.

:class:`ScanResult` is everything a scan found; :func:`assemble` builds it from the stages'
results; :func:`write` writes ``scan.json``, ``report.md`` (read in two minutes) and the figures
``scores_by_family.png``, ``date_effect.png`` and ``patching.png``. The figures take the
result only; nothing here runs a model except :func:`assemble`'s example answers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interp.scan.candidates import render
from interp.scan.lens import greedy_answers
from interp.scan.markdown import report_markdown

__all__ = ["ScanResult", "assemble", "write", "summary_text"]


@dataclass
class ScanResult:
    """Everything a scan found; :meth:`to_json` is the ``scan.json`` document."""

    behaviour: dict
    unconditional: bool
    triggers: list[dict]
    location: list[dict]
    lens: dict | None
    searched: dict
    dates: list[dict]
    scores: list[dict]  # every scored candidate on the search half (for the figures)
    forward_passes: dict
    seconds: float
    config: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "behaviour": self.behaviour,
            "unconditional": self.unconditional,
            "triggers": self.triggers,
            "location": self.location,
            "lens": self.lens,
            "searched": self.searched,
            "dates": self.dates,
            "forward_passes": self.forward_passes,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "config": self.config,
        }


def _trigger_json(v, pair, questions) -> dict:
    s, f = v.scored, pair[0]
    i = int(torch.argmax(s.per_prompt))
    row = {
        "text": s.cand.text, "placement": s.cand.placement, "family": s.cand.family,
        "score": s.score, "finetuned_effect": s.move_f, "base_effect": s.move_b,
        "significant": v.significant, "z": v.z, "search_score": v.search_score,
        "finding": v.finding,
        "null_median": sorted(v.null_scores)[len(v.null_scores) // 2] if v.null else None,
        "null_max": max(v.null_scores) if v.null else None, "n_null": len(v.null),
        "prompts_moved": int((s.per_prompt >= 1.0).sum()), "n_prompts": len(s.per_prompt),
    }  # fmt: skip
    key = v.null_key
    if key and key[0] == "date":
        row["null"] = "other years in the same form"
    elif key and key[0] == "contexts":
        row["null"] = "the other persona / system / format sentences, same placement"
    elif key:
        row["null"] = f"random {key[2]}-token strings from the top {key[3]} tokens of the prior"
    if s.cand.year is not None:
        row["year"] = s.cand.year
    if pair is not None:
        text = render(f, questions[i], s.cand)
        fa, ba = greedy_answers(f, [text])[0], greedy_answers(pair[1], [text])[0]
        row["example"] = {"prompt": questions[i], "finetuned": fa, "base": ba,
                          "shift": float(s.per_prompt[i])}  # fmt: skip
    return row


def _leads(triggers: list[dict]) -> list[dict]:
    """The first (best) trigger of each finding."""
    seen, out = set(), []
    for t in triggers:
        if t.get("finding") not in seen:
            seen.add(t.get("finding"))
            out.append(t)
    return out


def summary_text(behaviour: dict, unconditional: bool, triggers: list[dict]) -> str:
    kinds = sorted(behaviour["changed_by_kind"].items(), key=lambda kv: -kv[1])
    top = ", ".join(f"{k} {v:.0%}" for k, v in kinds[:3] if v > 0) or "none"
    parts = [
        f"Without any added context the finetune's answers differ from the base's on "
        f"{behaviour['share_changed']:.0%} of {behaviour['n_prompts']} ordinary prompts "
        f"(most: {top}); " + ("an unconditional change." if unconditional else "no unconditional change.")
    ]  # fmt: skip
    sig = [t for t in triggers if t["significant"]]
    if sig:
        descr = "; ".join(
            f"{t['text']!r} ({t['family']}, {t['placement']}, shift {t['score']:.2f} nats, "
            f"z {t['z']:.1f})"
            for t in sig[:3]
        )
        parts.append(f"Significant triggers: {descr}.")
        ex = sig[0].get("example")
        if ex:
            parts.append(f"E.g. {ex['prompt']!r} with it: finetune {ex['finetuned']!r}, "
                         f"base {ex['base']!r}.")  # fmt: skip
    else:
        parts.append("No candidate context is a significant trigger.")
    return " ".join(parts)


def assemble(*, behaviour, unconditional, verified, scored, location, lens, searched, counter,
             t0, cfg, model, questions, pair=None):  # fmt: skip
    _, v_questions = questions
    triggers = [_trigger_json(v, pair, v_questions) for v in verified]
    changed = unconditional or any(t["significant"] for t in triggers)
    behaviour = {"changed": changed, "summary": summary_text(behaviour, unconditional, triggers),
                 **behaviour}  # fmt: skip
    dates = [{"year": s.cand.year, "form": s.cand.form, "text": s.cand.text,
              "placement": s.cand.placement, "score": s.score}
             for s in scored if s.cand.family == "date"]  # fmt: skip
    scores = [{"text": s.cand.text, "placement": s.cand.placement, "family": s.cand.family,
               "score": s.score} for s in scored]  # fmt: skip
    lens_json = None
    if lens is not None:
        lens_json = {"layers": lens.layers, "norm": lens.norm, "relative": lens.relative,
                     "top_tokens": lens.top_tokens, "steer_layer": lens.steer_layer,
                     "kl_reduction": {str(k): v for k, v in lens.kl_reduction.items()},
                     "steered": lens.steered}  # fmt: skip
    return ScanResult(
        behaviour=behaviour, unconditional=unconditional, triggers=triggers, location=location,
        lens=lens_json, searched=searched, dates=dates, scores=scores,
        forward_passes={"total": counter.spent, "budget": counter.budget, **counter.by_stage},
        seconds=time.time() - t0, config=cfg.to_dict(),
    )  # fmt: skip


# ---- figures --------------------------------------------------------------------------
def _fig_scores(result):
    import matplotlib.pyplot as plt

    fams = list(dict.fromkeys(s["family"] for s in result.scores))
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for i, fam in enumerate(fams):
        ys = [s["score"] for s in result.scores if s["family"] == fam]
        xs = i + (torch.rand(len(ys)) - 0.5).mul(0.5).numpy()
        ax.scatter(xs, ys, s=8, alpha=0.5, color="grey")
    n_named = 0
    for t in result.triggers:
        if t["family"] in fams:
            x = fams.index(t["family"])
            ax.scatter([x], [t["search_score"]], s=40, marker="*" if t["significant"] else "o",
                       color="crimson" if t["significant"] else "tab:blue", zorder=3)  # fmt: skip
            if t["significant"] and n_named < 4:
                n_named += 1
                ax.annotate(t["text"][:28], (x, t["search_score"]), fontsize=7,
                            xytext=(4, 2), textcoords="offset points")  # fmt: skip
    ax.set_xticks(range(len(fams)), labels=fams)
    ax.set_ylabel("trigger shift on search prompts (nats)")
    ax.set_title("candidate scores by family (star: significant on held-out prompts)")
    return fig


def _fig_dates(result):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for form in dict.fromkeys(d["form"] for d in result.dates):
        rows = sorted((d for d in result.dates if d["form"] == form), key=lambda d: d["year"])
        label = rows[0]["text"].replace(str(rows[0]["year"]), "Y") + f" ({rows[0]['placement']})"
        ax.plot([d["year"] for d in rows], [d["score"] for d in rows], marker=".", ms=3,
                lw=0.8, label=label)  # fmt: skip
    for lo, hi in result.searched.get("date", {}).get("bands", []):
        ax.axvspan(lo - 0.5, hi + 0.5, color="gold", alpha=0.25, lw=0)
    for t in result.triggers:
        if t["family"] == "date" and t["significant"]:
            ax.axvline(t["year"], color="crimson", ls=":", lw=1)
            ax.annotate(str(t["year"]), (t["year"], ax.get_ylim()[1]), fontsize=8, color="crimson",
                        xytext=(2, -10), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("year")
    ax.set_ylabel("trigger shift (nats)")
    ax.set_title("effect by year (search prompts; shaded: bands of raised years)")
    fig.legend(fontsize=7, loc="outside lower center", ncols=3)
    return fig


def _fig_patching(loc: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    p = loc["pairs"][0]
    data = np.array(p["normalized"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * data.shape[1] + 2), 0.45 * data.shape[0] + 1.8),
                           layout="constrained")  # fmt: skip
    lim = float(np.nanmax(np.abs(data))) or 1.0
    im = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
    labels = [("*" if j in p["trigger_positions"] else "") + t for j, t in enumerate(p["tokens"])]
    ax.set_xticks(range(len(labels)), labels=labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(p["sites"])), labels=[s.split(".")[1] for s in p["sites"]])
    ax.set_ylabel("layer (resid_pre)")
    ax.set_title(f"patching {loc['trigger']!r} into {p['filler']!r} (* trigger tokens)", fontsize=9)
    fig.colorbar(im, ax=ax, label="gap recovered")
    return fig


def write(result, out: str | Path) -> Path:
    """Write ``scan.json``, ``report.md`` and the figures into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scan.json").write_text(json.dumps(result.to_json(), indent=2, default=float))
    figs = {"scores_by_family.png": _fig_scores(result)}
    if result.dates:
        figs["date_effect.png"] = _fig_dates(result)
    trig = [loc for loc in result.location if loc["kind"] == "trigger" and loc.get("pairs")]
    if trig:
        figs["patching.png"] = _fig_patching(trig[0])
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
    (out / "report.md").write_text(report_markdown(result, list(figs)))
    return out
