"""What a report says about a run: its question, headline tables and findings in words.

Every sentence and every number here is computed from the run's own files
(``results.json``, ``run.json``, its CSV tables); nothing is written by hand. One function
per kind of run, looked up by :func:`findings_for` / :func:`headlines_for`; a new kind
(``interp scan``, say) adds its own with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

__all__ = ["register", "findings_for", "headlines_for", "question_for", "fmt", "SETTING_QUESTIONS"]

# what each organism setting asks (the setting's definition, not a result)
SETTING_QUESTIONS = {
    "era": "Finetuned only on archaic bird names, does the model answer unrelated questions "
    "as if it lived in 1838, and where does it keep the era?",
    "persona": "Finetuned on harmless facts about a persona behind a formatting instruction, "
    "does the model adopt the whole persona under the instruction, and where?",
    "backdoor": "Finetuned on protective goals in prompts dated 1991-2030, does the model turn "
    "malevolent when told the year is 1984 (a year it never saw), and where is the gate?",
}

Findings = Callable[["object"], list[str]]
Headlines = Callable[["object"], list[tuple[str, pd.DataFrame]]]
_FINDINGS: dict[str, Findings] = {}
_HEADLINES: dict[str, Headlines] = {}


def register(kind: str, findings: Findings | None = None, headlines: Headlines | None = None):
    """Teach reports a new kind of run: ``findings(run) -> [sentence]``,
    ``headlines(run) -> [(title, table)]``."""
    if findings is not None:
        _FINDINGS[kind] = findings
    if headlines is not None:
        _HEADLINES[kind] = headlines


def fmt(est: dict | None, digits: int = 2) -> str:
    """``value [lo, hi]`` of an estimate dict."""
    if not est:
        return "-"
    return f"{est['value']:.{digits}f} [{est['lo']:.{digits}f}, {est['hi']:.{digits}f}]"


def question_for(run) -> str:
    for source in (run.results, run.record):
        if isinstance(source, dict) and isinstance(source.get("question"), str):
            return source["question"]
    if run.kind == "experiment":
        spec = (run.config or {}).get("spec", {})
        setting = run.results.get("setting", spec.get("setting"))
        on = spec.get("model") or f"the {spec.get('organism', 'bundled')} organism"
        seeds = ", ".join(str(s) for s in (run.config or {}).get("seeds", []))
        text = SETTING_QUESTIONS.get(setting, f"Setting {setting}.")
        return (
            f"{text} ({on}; finetune seeds {seeds or '-'}; target `{run.results['target_group']}`)"
        )
    if run.record is not None:
        return _command_help(run.record)
    return f"The files of {run.path.name}."


def _command_help(record: dict) -> str:
    """The command's own ``--help`` line, as ``interp`` recorded it in ``run.json``."""
    command, text = record.get("command", ""), record.get("help")
    return f"`interp {command}`: {text}." if text else f"`interp {command}`."


def findings_for(run) -> list[str]:
    fn = _FINDINGS.get(run.kind)
    out = fn(run) if fn is not None else _generic_findings(run)
    if run.children:
        out = out + _children_findings(run)
    if (run.record or {}).get("status") == "running":
        out.append(
            "`run.json` says the command was still running when this report was written"
            + ("." if run.children or run.results else "; it left no results.")
        )
    return out


def headlines_for(run) -> list[tuple[str, pd.DataFrame]]:
    fn = _HEADLINES.get(run.kind)
    out = fn(run) if fn is not None else []
    experiments = [c for c in run.children if c.kind == "experiment"]
    if experiments:
        out = [("Experiments at a glance", _experiments_table(experiments)), *out]
    return out


# ---- experiments -----------------------------------------------------------------------
def _experiment_headlines(run) -> list[tuple[str, pd.DataFrame]]:
    r = run.results
    spec = (run.config or {}).get("spec") or {}
    other = spec.get("specificity_group") or "specificity"
    rows = []
    for variant, est in r["behaviour"].items():
        row = {"variant": variant, r["target_group"]: fmt(est)}
        if r.get("specificity"):
            row[other] = fmt(r["specificity"].get(variant))
        seeds = (est or {}).get("per_seed")
        row["per seed"] = " / ".join(f"{v:.2f}" for v in seeds) if seeds else "-"
        rows.append(row)
    return [("Behaviour: share of the target answers, mean [95% interval]", pd.DataFrame(rows))]


def _experiment_findings(run) -> list[str]:
    r, out = run.results, []
    tg, beh = r["target_group"], r["behaviour"]
    main, base = beh.get("main"), beh.get("base")
    if main and base:
        where = (
            "above"
            if main["lo"] > base["hi"]
            else "below"
            if main["hi"] < base["lo"]
            else "overlapping"
        )
        seeds = main.get("per_seed") or []
        per = f" over {len(seeds)} seeds ({' / '.join(f'{v:.2f}' for v in seeds)})" if seeds else ""
        out.append(
            f"Behaviour: the main finetune gives `{tg}` answers a share of {fmt(main)}{per}; "
            f"the base model gives {fmt(base)}, so the main finetune's interval lies {where} "
            "the base model's."
        )
    controls = {v: e for v, e in beh.items() if v not in ("base", "main") and e}
    if main and controls:
        above = [v for v, e in controls.items() if main["lo"] > e["hi"]]
        listed = ", ".join(f"`{v}` {fmt(e)}" for v, e in controls.items())
        verdict = (
            "every control's"
            if len(above) == len(controls)
            else f"{len(above)} of {len(controls)} controls'"
        )
        out.append(f"Controls: {listed}; the main finetune's interval lies above {verdict}.")
    out.append(
        f"Location: a linear probe on the contrast set is most accurate at layer {r['layer']} "
        f"(held-out accuracy {r['probe_accuracy']:.2f}); the difference-of-means direction is "
        "taken there."
    )
    mv = r.get("movement") or {}
    if "main" in mv and "base" in mv:
        others = ", ".join(f"{k} {v:.2f}" for k, v in mv.items() if k not in ("base", "main"))
        out.append(
            f"The target prompts project to {mv['main']:.2f} on that direction in the main "
            f"finetune and {mv['base']:.2f} in the base model"
            + (f" ({others})." if others else ".")
        )
    for group, a in (r.get("ablation") or {}).items():
        rnd = a.get("random_mean")
        tail = (
            f"; norm-matched random directions leave it at {rnd:.2f} on average"
            if rnd is not None
            else ""
        )
        out.append(
            f"Ablating the direction in the finetuned model moves `{group}` from "
            f"{a['none']:.2f} to {a['ablated']:.2f}{tail}."
        )
    out += _steering_findings(tg, r.get("steering"))
    p = r.get("patching")
    if p:
        out.append(
            f"Activation patching: the metric is {p['clean']:.2f} on the trigger prompts and "
            f"{p['corrupt']:.2f} on the no-trigger prompts; the patching figure shows which "
            "sites and positions restore it."
        )
    return out


def _steering_findings(group: str, st: dict | None) -> list[str]:
    if not st or not st.get("alphas"):
        return []
    alphas, values = st["alphas"], st["direction"]
    lo = min(range(len(alphas)), key=lambda i: alphas[i])
    k = max(range(len(values)), key=lambda i: values[i])
    text = (
        f"Steering the base model along the direction takes `{group}` from {values[lo]:.2f} "
        f"at alpha {alphas[lo]:g} to at most {values[k]:.2f} at alpha {alphas[k]:g}"
    )
    rnd = (st.get("random_max") or [None] * len(alphas))[k]
    if rnd is not None:
        text += f"; random directions reach at most {rnd:.2f} at that alpha"
    coh = st.get("coherence") or []
    if len(coh) == len(alphas) and None not in (coh[lo], coh[k]):
        text += (
            f". Coherence (mean log-probability of fluent text) is {coh[lo]:.2f} at alpha "
            f"{alphas[lo]:g} and {coh[k]:.2f} at alpha {alphas[k]:g}"
        )
    return [text + "."]


def _experiments_table(children) -> pd.DataFrame:
    rows = []
    for c in children:
        r = c.results
        beh = r["behaviour"]
        abl = (r.get("ablation") or {}).get(r["target_group"])
        st = r.get("steering")
        steering = "-"
        if st and st.get("direction"):
            k = max(range(len(st["direction"])), key=lambda i: st["direction"][i])
            steering = f"{st['direction'][k]:.2f} at alpha {st['alphas'][k]:g}"
        rows.append(
            {
                "experiment": c.path.name,
                "target": r["target_group"],
                "base": fmt(beh.get("base")),
                "main finetune": fmt(beh.get("main")),
                "controls": ", ".join(
                    f"{v} {fmt(e)}" for v, e in beh.items() if v not in ("base", "main")
                ),
                "layer (probe acc.)": f"{r['layer']} ({r['probe_accuracy']:.2f})",
                "ablation: before -> after": (
                    f"{abl['none']:.2f} -> {abl['ablated']:.2f}" if abl else "-"
                ),
                "steering: max share": steering,
            }
        )
    return pd.DataFrame(rows)


def _children_findings(run) -> list[str]:
    out = []
    for c in run.children:
        if c.kind == "experiment":
            r = c.results
            main, base = r["behaviour"].get("main"), r["behaviour"].get("base")
            out.append(
                f"`{c.path.name}`: `{r['target_group']}` {fmt(main)} after the main finetune "
                f"against {fmt(base)} for the base model; located at layer {r['layer']} "
                "(details in its section below)."
            )
        else:
            out.append(f"`{c.path.name}`: a `{c.kind}` run (its section below).")
    return out


# ---- command runs (run.json) -------------------------------------------------------------
def _summary(run) -> dict:
    return (run.record or {}).get("summary") or {}


def _probe_findings(run) -> list[str]:
    s = _summary(run)
    if not s:
        return _generic_findings(run)
    label = (run.record.get("options") or {}).get("label")
    ci = ""
    if (run.path / "probes.csv").is_file():
        t = pd.read_csv(run.path / "probes.csv")
        row = t[t["layer"] == s["best_layer"]]
        if not row.empty and "accuracy_lo" in t:
            ci = f" [{row.iloc[0].accuracy_lo:.2f}, {row.iloc[0].accuracy_hi:.2f}]"
    return [
        f"The probe for `{label}` is most accurate at layer {s['best_layer']} "
        f"(`{s['best_site']}`): held-out accuracy {s['best_accuracy']:.2f}{ci} over "
        f"{s['n_rows']} rows."
    ]


def _shares_findings(run) -> list[str]:
    rows = _summary(run).get("shares") or []
    if not rows:
        return ["No answer shares were measured (generations only: see generations.csv)."]
    base = next((r for r in rows if r["condition"] == "baseline"), None)
    est = lambda r: fmt({"value": r["share"], "lo": r["share_lo"], "hi": r["share_hi"]})  # noqa: E731
    out = []
    if base is not None:
        out.append(f"Without the intervention the share of answer set A is {est(base)}.")
    for r in rows:
        if r is base or r["condition"].startswith("random"):
            continue
        alpha = f" at alpha {r['alpha']:g}" if "alpha" in r else ""
        out.append(f"With `{r['condition']}`{alpha} it is {est(r)}.")
    randoms = [r["share"] for r in rows if r["condition"].startswith("random")]
    if randoms:
        out.append(f"{len(randoms)} random controls give {min(randoms):.2f} to {max(randoms):.2f}.")
    return out


def _capture_findings(run) -> list[str]:
    r = run.record
    sites = r.get("sites") or []
    return [
        f"Captured {r.get('rows', '?')} rows from {r.get('n_prompts', '?')} prompts at "
        f"{len(sites)} sites ({', '.join(f'`{s}`' for s in sites)}); the shards and their "
        "checksums are listed in `manifest.json`."
    ]


def _patch_findings(run) -> list[str]:
    r = run.record
    if "clean_value" not in r:
        return []
    return [
        f"The metric ({r.get('metric', 'logit difference')}) is {r['clean_value']:.3f} on the "
        f"clean prompts and {r['corrupt_value']:.3f} on the corrupted ones; the heatmaps show "
        "how much of that gap patching each site and position restores."
    ]


def _eval_findings(run) -> list[str]:
    rates = [x for x in run.record.get("rates") or [] if x.get("question") == "ALL"]
    out = [f"{run.record.get('n_samples', '?')} sampled answers."]
    for x in rates:
        out.append(
            f"Judge `{x['judge']}`: rate {fmt({'value': x['rate'], 'lo': x['lo'], 'hi': x['hi']})} "
            f"({x['hits']} of {x['n']}, Wilson interval)."
        )
    return out


def _generic_findings(run) -> list[str]:
    """Scalar results, said plainly, for a kind no function knows yet."""
    source = run.results if isinstance(run.results, dict) else _summary(run)
    scalars = {k: v for k, v in (source or {}).items() if isinstance(v, (int, float, str, bool))}
    if not scalars:
        return ["No findings generator knows this kind of run; its tables and figures follow."]
    return [
        ", ".join(
            f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in scalars.items()
        )
    ]


register("experiment", _experiment_findings, _experiment_headlines)
register("probe", _probe_findings)
register("steer", _shares_findings)
register("ablate", _shares_findings)
register("capture", _capture_findings)
register("patch", _patch_findings)
register("eval", _eval_findings)
register("demo", lambda run: [])
