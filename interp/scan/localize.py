"""Where a verified trigger (or an unconditional change) lives inside the finetune.

For a trigger, prompts with the trigger (clean) are paired with the same prompts holding a
*same-token-length* neutral filler of the same family (corrupt: the null member that moved
the finetune least), so every position lines up whatever the positions model. Each pair
is extended by the finetune's answer up to the first token where the two answers part;
the metric is the finetune's logit of its triggered answer token minus that of its filler
answer token there. Then:

- activation patching (``resid_pre`` of every layer, every position; one pair per call)
  gives the layers and positions that carry the trigger, normalized per pair;
- the difference of means (trigger minus filler, last position) at every layer is the
  finetune's shift as a direction; clamping it to the filler mean (mean ablation) is
  compared with norm-matched random directions.

An unconditional change has no filler: its direction is the finetune-minus-base mean at
the last position of the most-changed prompts, ablated in the finetune toward the base mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from interp.causal.interventions import ablate, random_like
from interp.causal.patching import patch
from interp.directions.diffmeans import diff_of_means
from interp.errors import InterpError
from interp.record.capture import capture
from interp.scan import candidates as C
from interp.scan.candidates import render
from interp.scan.divergence import Counter
from interp.scan.lens import greedy_answers
from interp.scan.verify import Verified

__all__ = ["localize_trigger", "localize_unconditional"]


def _join(prompt: str, answer: str) -> str:
    if not answer:
        return prompt
    return prompt + answer if prompt[-1:].isspace() else f"{prompt} {answer}"


@torch.no_grad()
def _next(model, texts: Sequence[str]) -> torch.Tensor:
    batch = model.tokenize(list(texts))
    out = model.forward(batch["input_ids"], batch["attention_mask"], logits_to_keep=1)
    return out.logits[:, -1].float().cpu()  # [n, v]


def _metric(target: int, alt: int):
    def metric(logits):  # [n, vocab] -> [n]
        return logits[:, target] - logits[:, alt]

    return metric


def _part(model, clean: str, corrupt: str, n_tokens: int = 8):
    """(clean + shared answer prefix, corrupt + the same, target id, alt id) or None."""
    a, b = greedy_answers(model, [clean, corrupt], n_tokens)
    wa, wb = a.split(), b.split()
    k = next((i for i, (x, y) in enumerate(zip(wa, wb, strict=False)) if x != y), None)
    if k is None:
        k = min(len(wa), len(wb))
    prefix = " ".join(wa[:k])
    ck, xk = _join(clean, prefix), _join(corrupt, prefix)
    logits = _next(model, [ck, xk])
    target, alt = int(logits[0].argmax()), int(logits[1].argmax())
    if target == alt:
        return None
    return ck, xk, target, alt


def _fillers(trigger: Verified) -> list:
    """Neutral stand-ins for the trigger: its null members (least moving first), then for a
    date every other year in the same form (one of them will match the token length)."""
    out = [n.cand for n in sorted(trigger.null, key=lambda n: abs(n.score))]
    c = trigger.scored.cand
    if c.family == "date":
        seen = {x.text for x in out}
        for y in C.YEARS:
            text = c.text.replace(str(c.year), str(y))
            if y != c.year and text not in seen:
                out.append(dataclasses.replace(c, text=text, year=y))
    return out


def _pairs(f, trigger: Verified, questions, n_pairs, max_tries: int = 6):
    """Same-length (clean, corrupt, target, alt, filler, question) pairs for the trigger."""
    fillers = _fillers(trigger)
    order = torch.argsort(trigger.scored.per_prompt, descending=True).tolist()
    out = []
    for i in order:
        if trigger.scored.per_prompt[i] <= 0 or len(out) == n_pairs:
            break
        clean = render(f, questions[i], trigger.scored.cand)
        n = len(f.tokenize([clean])["input_ids"][0])
        tries = 0
        for filler in fillers:
            corrupt = render(f, questions[i], filler)
            if len(f.tokenize([corrupt])["input_ids"][0]) != n:
                continue
            got = _part(f, clean, corrupt)
            if got is not None:
                out.append((*got, filler.text, questions[i]))
                break
            tries += 1
            if tries == max_tries:
                break
    return out


def _trigger_tokens(model, text: str, trigger: str) -> list[int]:
    enc = model.tokenize([text], offsets=True)
    lo = text.rfind(trigger)
    hi = lo + len(trigger)
    spans = enc["offset_mapping"][0].tolist()
    return [j for j, (s, e) in enumerate(spans) if e > s and s < hi and e > lo]


def _direction(a, b, k: int, name: str):
    """Difference of means at site ``k``, or None where the two sets do not differ."""
    try:
        return diff_of_means(a, b, site=k, name=name)
    except InterpError:
        return None


def _ablation(model, clean, corrupt, metrics, counter, n_random) -> list[dict]:
    """Per layer: mean-ablate the trigger-minus-filler direction (and random ones)."""
    acts_c = capture(model, clean, sites="resid_post", positions="last", progress=False)
    acts_x = capture(model, corrupt, sites="resid_post", positions="last", progress=False)
    counter.spend(2 * len(clean))

    def value() -> float:
        logits = _next(model, clean)
        return float(torch.stack([m(logits[i : i + 1])[0] for i, m in enumerate(metrics)]).mean())

    before = value()
    lx = _next(model, corrupt)
    floor = float(torch.stack([m(lx[i : i + 1])[0] for i, m in enumerate(metrics)]).mean())
    rows = []
    for k, layer in enumerate(acts_c.layers):
        direction = _direction(acts_c, acts_x, k, f"trigger-L{layer}")
        if direction is None:
            rows.append(dict(layer=layer, note="no difference at this layer"))
            continue
        ref = acts_x.site(k).float()
        counter.spend((1 + n_random) * len(clean))
        with ablate(model, direction, layers=layer, mode="mean", reference=ref):
            after = value()
        rand = []
        for s in range(n_random):
            with ablate(model, random_like(direction, seed=s), layers=layer, mode="mean",
                        reference=ref):  # fmt: skip
                rand.append(value())
        gap = before - floor
        rows.append(dict(layer=layer, before=before, after=after, filler=floor,
                         random=sum(rand) / len(rand), removed=(before - after) / gap if gap else 0.0,
                         removed_random=(before - sum(rand) / len(rand)) / gap if gap else 0.0,
                         direction_norm=direction.scale))  # fmt: skip
    return rows


def localize_trigger(
    pair, trigger: Verified, questions: Sequence[str], counter: Counter, *,
    n_pairs: int = 4, n_random: int = 8,
) -> dict:  # fmt: skip
    """Patching map, per-layer summary and direction ablation for a verified trigger."""
    f = pair[0]
    pairs = _pairs(f, trigger, list(questions), n_pairs)
    if not pairs:
        return {"trigger": trigger.scored.cand.text, "pairs": [], "note": "no same-length pair"}
    maps, summary = [], []
    for clean, corrupt, target, alt, filler, q in pairs:
        n_tok = len(f.tokenize([clean])["input_ids"][0])
        counter.spend(f.n_layers * n_tok + 2)
        res = patch(f, [clean], [corrupt], metric=_metric(target, alt), sites="resid_pre",
                    positions="all")  # fmt: skip
        gap = res.clean_value - res.corrupt_value
        norm = (res.values - res.corrupt_value) / gap if gap else res.values * 0
        trig = _trigger_tokens(f, clean, trigger.scored.cand.text)
        maps.append(dict(question=q, filler=filler, clean=clean, corrupt=corrupt,
                         tokens=[t.split(":", 1)[-1] for t in res.tokens], sites=res.sites,
                         normalized=norm.tolist(), trigger_positions=trig,
                         target=f.tokenizer.decode([target]), alt=f.tokenizer.decode([alt]),
                         gap=gap))  # fmt: skip
    for li, site in enumerate(maps[0]["sites"]):
        row = {"site": site, "trigger_tokens": [], "last": [], "other": []}
        for m in maps:
            vals = m["normalized"][li]
            trig = m["trigger_positions"]
            rest = [v for j, v in enumerate(vals[:-1]) if j not in trig]
            row["trigger_tokens"].append(max((vals[j] for j in trig), default=0.0))
            row["last"].append(vals[-1])
            row["other"].append(max(rest, default=0.0))
        summary.append({k: (sum(v) / len(v) if isinstance(v, list) else v) for k, v in row.items()})
    metrics = [_metric(p[2], p[3]) for p in pairs]
    ablation = _ablation(f, [p[0] for p in pairs], [p[1] for p in pairs], metrics, counter,
                         n_random)  # fmt: skip
    return {"trigger": trigger.scored.cand.text, "placement": trigger.scored.cand.placement,
            "pairs": maps, "summary": summary, "ablation": ablation}  # fmt: skip


def localize_unconditional(
    pair, texts: Sequence[str], counter: Counter, *, n_random: int = 8
) -> dict:
    """Direction of an unconditional change (finetune minus base, last position) per layer,
    mean-ablated in the finetune toward the base mean, against random directions."""
    f, b = pair
    lf, lb = _next(f, texts), _next(b, texts)
    keep = [i for i in range(len(texts)) if int(lf[i].argmax()) != int(lb[i].argmax())]
    if not keep:
        return {"prompts": [], "note": "the first answer tokens agree on every prompt"}
    texts = [texts[i] for i in keep]
    metrics = [_metric(int(lf[i].argmax()), int(lb[i].argmax())) for i in keep]
    acts_f = capture(f, texts, sites="resid_post", positions="last", progress=False)
    acts_b = capture(b, texts, sites="resid_post", positions="last", progress=False)
    counter.spend(4 * len(texts))

    def value(model) -> float:
        logits = _next(model, texts)
        return float(torch.stack([m(logits[i : i + 1])[0] for i, m in enumerate(metrics)]).mean())

    before, floor = value(f), value(b)
    rows = []
    for k, layer in enumerate(acts_f.layers):
        direction = _direction(acts_f, acts_b, k, f"finetune-L{layer}")
        if direction is None:
            rows.append(dict(layer=layer, note="no difference at this layer"))
            continue
        ref = acts_b.site(k).float()
        counter.spend((1 + n_random) * len(texts))
        with ablate(f, direction, layers=layer, mode="mean", reference=ref):
            after = value(f)
        rand = []
        for s in range(n_random):
            with ablate(
                f, random_like(direction, seed=s), layers=layer, mode="mean", reference=ref
            ):
                rand.append(value(f))
        gap = before - floor
        rows.append(dict(layer=layer, before=before, after=after, base=floor,
                         random=sum(rand) / len(rand), removed=(before - after) / gap if gap else 0.0,
                         removed_random=(before - sum(rand) / len(rand)) / gap if gap else 0.0,
                         direction_norm=direction.scale))  # fmt: skip
    return {"prompts": texts, "ablation": rows}
