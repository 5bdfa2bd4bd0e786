"""The demo's summary, written from the experiments' ``results.json`` alone.

:func:`summary_markdown` is what ``interp demo`` writes to ``runs/demo/summary.md`` and
``make readme`` puts into the README: a provenance comment, the table of headline
numbers (:func:`summary_table`), a paragraph on how to read it and one findings bullet per
experiment (:func:`findings`): behaviour shares with their intervals, the probe's layer,
ablation before -> after against random directions, steering's maximum against the random
band, the patching cells that recover most of the gap and the held-out ablation of the
finetune's own shift (removed share of the excess). Nothing in it depends on time
or on where the runs live, so a rerun writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["findings", "summary_markdown", "summary_table"]

LABELS = {"backdoor": "year backdoor"}


def _fmt(est: dict | None) -> str:
    if est is None:
        return "-"
    text = f"{est['value']:.2f} [{est['lo']:.2f}, {est['hi']:.2f}]"
    if est.get("per_seed"):
        text += " (seeds " + " / ".join(f"{v:.2f}" for v in est["per_seed"]) + ")"
    return text


def _steering_max(st: dict) -> tuple[int, float]:
    k = max(range(len(st["direction"])), key=lambda i: st["direction"][i])
    randoms = [r for r in st["random_max"] if r is not None]
    return k, max(randoms) if randoms else float("nan")


def summary_table(results: Mapping[str, dict]) -> str:
    """Markdown table of the demo's headline numbers, one row per experiment."""
    lines = [
        "| experiment | behaviour (target share) | base | main finetune | controls | analysed seed: layer (probe acc.) "
        "| ablation: before -> after (random) | held-out ablation of the finetune's shift: "
        "removed share of the excess (random max) | steering: max share (random max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        beh = s["behaviour"]
        controls = ", ".join(f"{v} {_fmt(e)}" for v, e in beh.items() if v not in ("base", "main"))
        abl = s["ablation"].get(s["target_group"], {})
        ablation = (
            f"{abl['none']:.2f} -> {abl['ablated']:.2f} ({abl['random_mean']:.2f})" if abl else "-"
        )
        steering = "-"
        if "steering" in s:
            st = s["steering"]
            k, rmax = _steering_max(st)
            steering = f"{st['direction'][k]:.2f} at alpha {st['alphas'][k]} ({rmax:.2f})"
        lines.append(
            f"| {name} | {s['target_group']} | {_fmt(beh.get('base'))} | {_fmt(beh.get('main'))} | "
            f"{controls or '-'} | {s.get('analysis_seed', '-')}: {s['layer']} ({s['probe_accuracy']:.2f}) | "
            f"{ablation} | {_held_out_cell(s.get('localization'))} | {steering} |"
        )
    return "\n".join(lines)


def _held_out_cell(loc: dict | None) -> str:
    if not loc or not loc.get("place"):
        return "-"
    p, r = loc["place"], loc["random"]
    return f"{_fmt(loc['removal'])} at layer {p['layer']}, rank {p['k']} ({r['max']:.2f})"


def _excluded(part: dict) -> str:
    gone = part.get("excluded") or []
    if not gone:
        return ""
    names = ", ".join(str(i) for i in gone)
    return f"(seed index {names} left out: no excess on these questions) "


def _held_out_sentence(s: dict) -> str:
    loc = s["localization"]
    p, r = loc["place"], loc["random"]
    controls = "; ".join(
        f"{v} {sum(c['before']) / len(c['before']):.2f} -> {sum(c['after']) / len(c['after']):.2f}"
        for v, c in loc["controls"].items()
    )
    text = (
        f"Held out: the finetune's own activation difference entering block {p['layer']} as a "
        f"rank-{p['k']} subspace (chosen on {p['select_items']} questions, over the seeds) "
        f"removes {_interval(loc['removal'])} of the excess on the other {p['report_items']} "
        f"{_excluded(loc)}(`{s['target_group']}` {loc['before']:.2f} -> {loc['after']:.2f}, base "
        f"{loc['base']:.2f}; {r['n']} random subspaces of that rank: mean {r['mean']:.2f}, "
        f"at most {r['max']:.2f}). On ordinary prompts the ablated finetune's next token is "
        f"at most {loc['kl_base_ablated']:.2f} nats (KL) from the base model's, the finetune's "
        f"own at most {loc['kl_base_finetune']:.2f}"
    )
    if loc.get("other_ablated") is not None:
        text += (
            f"; the other settings' shares stay within {loc['other_ablated']:.2f} of the base "
            f"(the finetune: {loc['other_finetune']:.2f})"
        )
    return text + (f". Controls, same ablation (mean over seeds): {controls}." if controls else ".")


def _sae_sentence(sae: dict) -> str:
    parts = []
    for arch, a in sae["architectures"].items():
        r = a["random"]
        parts.append(
            f"{arch} (explained variance {a['train']['explained_variance']:.3f}, L0 "
            f"{a['train']['l0']:.0f}): the top {a['n']} latents by activation difference "
            f"remove {_interval(a['removal'])} ({r['n']} random sets: mean {r['mean']:.2f}, "
            f"at most {r['max']:.2f})"
        )
    return (
        f"SAEs of {sae['latents']} latents trained on the base model at `{sae['site']}`, "
        "latents ablated in the finetune with the error term kept, held out the same way: "
        + "; ".join(parts)
        + "."
    )


def _interval(est: dict) -> str:
    return f"{est['value']:.2f} [{est['lo']:.2f}, {est['hi']:.2f}]"


def _behaviour_sentence(s: dict) -> str:
    beh, target = s["behaviour"], s["target_group"]
    main, base = beh["main"], beh.get("base")
    seeds = len(main.get("per_seed") or [0])
    text = f"the main finetune gives `{target}` {_interval(main)}"
    text += f" over {seeds} finetune seed{'s' if seeds != 1 else ''}"
    if base:
        text += f", the base model {_interval(base)}"
    controls = [f"{v} {_interval(e)}" for v, e in beh.items() if v not in ("base", "main") and e]
    if controls:
        text += "; controls: " + ", ".join(controls)
    return text + "."


def _ablation_sentence(s: dict) -> str:
    parts = []
    for group, a in s["ablation"].items():
        rand = "" if a["random_mean"] is None else f" (random directions: {a['random_mean']:.2f})"
        parts.append(f"`{group}` from {a['none']:.2f} to {a['ablated']:.2f}{rand}")
    return (
        f"In seed {s.get('analysis_seed', '-')} a probe reads the contrast best at layer "
        f"{s['layer']} (accuracy {s['probe_accuracy']:.2f}); clamping the difference-of-means "
        f"direction there in the finetuned model takes " + " and ".join(parts) + "."
    )


def _steering_sentence(s: dict) -> str:
    st = s["steering"]
    k, rmax = _steering_max(st)
    return (
        f"Steering the base model along it reaches {st['direction'][k]:.2f} at alpha "
        f"{st['alphas'][k]:g} (alpha 0: {st['direction'][0]:.2f}; random directions: at most "
        f"{rmax:.2f} at any alpha)."
    )


def _patching_sentence(s: dict, top: int = 3) -> str:
    p = s["patching"]
    cells = ", ".join(
        f"`{c['site']}` at `{c['column']}` ({c['normalized']:.2f})" for c in p["top"][:top]
    )
    return (
        f"Patching the trigger into {p['n_pairs']} no-trigger prompts (metric {p['clean']:.2f} "
        f"clean, {p['corrupt']:.2f} corrupt), the cells that recover most of the gap are "
        f"{cells}."
    )


def findings(name: str, s: dict) -> str:
    """One markdown bullet of what experiment ``name`` found, from its ``results.json``."""
    parts = [_behaviour_sentence(s), _ablation_sentence(s)]
    if "steering" in s:
        parts.append(_steering_sentence(s))
    if "patching" in s:
        parts.append(_patching_sentence(s))
    if (s.get("localization") or {}).get("place"):
        parts.append(_held_out_sentence(s))
    if s.get("sae"):
        parts.append(_sae_sentence(s["sae"]))
    return f"- **{LABELS.get(name, name)}**: " + " ".join(parts)


def _reading(results: Mapping[str, dict]) -> str:
    seeds = {len(s.get("seeds") or []) for s in results.values()}
    n_random = {s.get("n_random") for s in results.values()}
    n = seeds.pop() if len(seeds) == 1 else None
    over = f"the {n} finetune seed{'s' * (n != 1)}" if n else "each experiment's seeds"
    rand = f"{n_random.pop()} " if len(n_random) == 1 else ""
    return (
        "Shares are teacher-forced answer-set shares (exact: the world knows every answer) "
        f"with 95% intervals (over questions for the base model, over {over} for finetunes). "
        "The probe, the ablation and the steering run in the *analysed seed* (the seed whose "
        "main finetune shows the behaviour most; every seed's number is in the table). "
        "Ablation clamps the direction at the best layer to its mean over the no-trigger "
        f'contrast prompts; "random" is the mean of {rand}norm-matched random directions. '
        "Steering adds alpha x (residual norm) x the direction to the base model. The "
        "held-out ablation is chosen and measured on different questions: the target "
        "questions are split in two, the layer and rank of the finetune's own activation "
        "difference (finetuned minus base, SVD) are chosen on one half, pooled over the seeds, and "
        "the share of the excess (finetune minus base) it removes is measured on the other, "
        "with a 95% interval over the seeds; its coordinates are clamped to their mean over "
        "the base model's activations, and the random subspaces are clamped the same way."
    )


def summary_markdown(
    results: Mapping[str, dict], *, organism: str = "default", variant: str = "embeddings"
) -> str:
    """summary.md: provenance, the table, how to read it, one findings bullet each
    (``variant``: the finetune recipe, named in the provenance unless the default)."""
    seeds = sorted({x for s in results.values() for x in s.get("seeds") or []})
    finetune = "" if variant == "embeddings" else f" finetune={variant}"
    head = f"<!-- interp demo: organism={organism}{finetune} seeds={','.join(map(str, seeds))} -->"
    bullets = "\n".join(findings(name, s) for name, s in results.items())
    return (
        "\n\n".join([head, summary_table(results), _reading(results), "What this shows:", bullets])
        + "\n"
    )
