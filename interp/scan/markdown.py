"""``report.md``: a scan's findings as a page a person reads in two minutes."""

from __future__ import annotations

from interp.scan.verify import VerifyConfig

__all__ = ["report_markdown"]


def _f(x, nd=2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _behaviour(r) -> list[str]:
    b = r.behaviour
    lines = ["## What changed", "", b["summary"], ""]
    lines += ["| prompt | base | finetuned | divergence (nats) | log B(a_F) - log B(a_B) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for e in b["examples"]:
        lines.append(f"| {e['prompt']} | {e['base']} | {e['finetuned']} | {e['divergence']:.2f} "
                     f"| {e['base_log_ratio']:.1f} |")  # fmt: skip
    kinds = ", ".join(f"{k} {v:.0%}" for k, v in b["changed_by_kind"].items())
    lines += ["", "Share of prompts changed (the base finds the finetune's greedy answer at least "
              f"10x less likely than its own) by kind: {kinds}.", ""]  # fmt: skip
    if r.lens:
        lz = r.lens
        lines += ["### Activation-difference lens", "",
                  "Mean finetune-minus-base residual on the first 5 tokens of plain texts, read "
                  "through the unembedding:", ""]  # fmt: skip
        for layer, toks, rel in zip(lz["layers"], lz["top_tokens"], lz["relative"], strict=True):
            lines.append(f"- layer {layer} (|diff| / |resid| = {rel:.3f}): {', '.join(toks)}")
        red = ", ".join(f"alpha {a}: {v:.0%}" for a, v in lz["kl_reduction"].items())
        lines += ["", f"Steering the base along it at layer {lz['steer_layer']} removes this "
                  f"share of its first-token KL to the finetune on the most-changed prompts: {red}.",
                  ""]  # fmt: skip
        lines += ["| alpha | prompt | base | steered base |", "|---|---|---|---|"]
        for s in lz["steered"][:8]:
            prompt = s["prompt"].rsplit("<|user|>", 1)[-1].split("<|end|>")[0].strip()
            lines.append(f"| {s['alpha']} | {prompt[-60:]} | {s['base']} | {s['steered']} |")
        lines.append("")
    return lines


def _triggers(r) -> list[str]:
    ratio = r.config.get("verify", {}).get("min_move_ratio", VerifyConfig().min_move_ratio)
    lines = ["## What triggers it", "",
             "Each candidate is inserted into held-out prompts; *shift* is how much more likely it "
             "makes the finetune's new answer for the finetune than for the base (nats over the "
             "answer's first tokens, mean over prompts), *z* its "
             "distance from random members of its family in robust SDs; *F move* / *B move* each "
             "model's first-token KL with vs without the candidate (a significant one moves the "
             f"finetune at least {ratio:g} times as far as the "
             "base).", "",
             "| candidate | family | placement | shift | z | null max | F move | B move | significant |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for t in r.triggers[:12]:
        lines.append(
            f"| `{t['text']}` | {t['family']} | {t['placement']} | {_f(t['score'])} | {_f(t['z'], 1)} "
            f"| {_f(t['null_max'])} | {_f(t['finetuned_effect'])} | {_f(t['base_effect'])} "
            f"| {'**yes**' if t['significant'] else 'no'} |"
        )
    for t in [t for t in r.triggers if t["significant"]][:3]:
        ex = t.get("example")
        if ex:
            lines.append(f"\n`{t['text']}` on *{ex['prompt']}*: finetune **{ex['finetuned']}**, "
                         f"base {ex['base']}.")  # fmt: skip
    return [*lines, ""]


def _searched(r) -> list[str]:
    s = r.searched
    lines = ["## What was searched", ""]
    d = s.get("date", {})
    lines.append(f"- dates: {d.get('scored')} of {d.get('candidates')} candidates, years "
                 f"{d.get('years')}, forms: {'; '.join(d.get('forms', []))}")  # fmt: skip
    c = s.get("contexts", {})
    lines.append(f"- contexts ({', '.join(c.get('families', []))}): {c.get('scored')} of "
                 f"{c.get('candidates')}")  # fmt: skip
    t = s.get("token", {})
    if t.get("coarse_per_placement"):
        lines.append(f"- single tokens, coarse pass: the top {t['coarse_per_placement']} of "
                     f"{t.get('searchable')} searchable ({t.get('vocab')} in the vocabulary) in the "
                     f"order of the {t.get('order')}, each in {t.get('coarse_questions')} questions "
                     "at each of system / user start / user end, scored by its first-token move "
                     "of the finetune less the base's")  # fmt: skip
    lines.append(f"- single tokens: the top {t.get('swept_per_placement')} of {t.get('searchable')} "
                 f"searchable at each placement, in the order of "
                 f"{'the coarse pass, then ' if t.get('coarse_per_placement') else ''}the "
                 f"{t.get('order')}; the rest was not swept. "
                 f"Top of the prior: {', '.join(map(repr, t.get('top_prior', [])))}")  # fmt: skip
    q = s.get("token_seq", {})
    lines.append(f"- sequences: greedy extension of {q.get('extended_seeds')} "
                 f"({q.get('extensions_scored')} scored), GCG {q.get('gcg_scored')} swaps "
                 f"(best {q.get('gcg_best')!r})")  # fmt: skip
    return [*lines, ""]


def _location(r) -> list[str]:
    lines = ["## Where it lives", ""]
    if not r.location:
        return [
            *lines,
            "Nothing to localize (no significant trigger, no unconditional change).",
            "",
        ]
    for loc in r.location:
        if loc["kind"] == "trigger" and loc.get("pairs"):
            lines.append(f"Trigger `{loc['trigger']}` patched (resid_pre) into same-length fillers "
                         f"({', '.join(repr(p['filler']) for p in loc['pairs'])}); mean share of "
                         "the logit gap recovered:")  # fmt: skip
            lines += [
                "",
                "| layer | trigger tokens | last position | best other |",
                "|---|---|---|---|",
            ]
            for row in loc["summary"]:
                lines.append(f"| {row['site'].split('.')[1]} | {_f(row['trigger_tokens'])} | "
                             f"{_f(row['last'])} | {_f(row['other'])} |")  # fmt: skip
        if loc.get("ablation"):
            what = "trigger - filler" if loc["kind"] == "trigger" else "finetune - base"
            lines += ["", f"Mean-ablating the {what} direction (last position, resid_post) in the "
                      "finetune, share of the gap removed (random: 8 norm-matched directions):", "",
                      "| layer | removed | random |", "|---|---|---|"]  # fmt: skip
            for row in loc["ablation"]:
                if "note" in row:
                    lines.append(f"| {row['layer']} | {row['note']} | |")
                    continue
                lines.append(
                    f"| {row['layer']} | {_f(row['removed'])} | {_f(row['removed_random'])} |"
                )
        lines.append("")
    return lines


def report_markdown(r, figures: list[str]) -> str:
    fp = r.forward_passes
    stages = ", ".join(f"{k} {v}" for k, v in fp.items() if k not in ("total", "budget"))
    lines = ["# Trigger scan", "", *_behaviour(r), *_triggers(r), *_searched(r), *_location(r)]
    lines += ["## Cost", "", f"{fp['total']} forward passes (budget {fp['budget']}; {stages}), "
              f"{r.seconds:.0f} s wall, {r.cpu_seconds:.0f} s CPU.", ""]  # fmt: skip
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
