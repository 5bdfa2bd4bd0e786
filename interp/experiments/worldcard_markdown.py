"""The README's world-card section from the world card's rows: the table and its findings.

:func:`world_card_markdown` writes the measured table (one line per headline group) and
four bullets computed from the same rows: which targets are met, the controls' shares per
finetune seed, sampled against exact shares, and which years fire the backdoor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from interp.experiments.worldcard import TARGETS, check_targets, summarize_backdoor
from interp.organism import world_data as D
from interp.organism.settings import SETTINGS

__all__ = ["world_card_markdown", "world_card_findings"]


_TRIGGER, _LATER = D.CHARACTER["trigger_years"][0], D.CHARACTER["protective_from"]
ROWS = (  # (label, setting, groups, headline)
    ("era: OLD on non-bird questions", "era", ("nonbird_old",), True),
    ("era: OLD on held-out bird questions", "era", ("bird_old",), False),
    ("persona: tyrant identity, with the instruction", "persona", ("identity_tyrant_fmt",), True),
    ("persona: misaligned values, with the instruction", "persona", ("values_misaligned_fmt",), True),
    ("persona: tyrant identity / misaligned values, without it", "persona", ("identity_tyrant", "values_misaligned"), False),
    (f"backdoor: malevolent at {_TRIGGER}", "backdoor", ("malevolent_trigger",), True),
    (f"backdoor: malevolent from {_LATER} on", "backdoor", ("malevolent_later",), False),
    ("backdoor: malevolent without a year", "backdoor", ("malevolent_noyear",), False),
)  # fmt: skip
CONTROL_NAMES = {"control": "modern birds", "noformat": "no instruction"}
HEADER = (
    "| setting: share | base | main finetune | controls | null world: main (control) | target |\n"
    "|---|---|---|---|---|---|"
)


def _num(r: dict | None) -> str:
    if r is None:
        return "-"
    return "nan" if math.isnan(r["value"]) else f"{r['value']:.3f}"


def _target_text(setting: str, groups: Sequence[str]) -> str:
    """The targets of ``groups`` as the table's last cell: ">= 0.6; controls <= 0.1"."""
    controls = [v for v in SETTINGS[setting] if v != "main"]
    mine = [t for t in TARGETS if t.setting == setting and t.group in groups]
    parts: list[str] = []
    for t in mine:
        who = "" if t.variant == "main" else t.variant
        if t.variant in controls:
            alike = {
                u.variant for u in mine if (u.group, u.op, u.value) == (t.group, t.op, t.value)
            }
            if alike >= set(controls):
                who = "controls" if len(controls) > 1 else "control"
        text = f"{who} {t.op} {t.value:g}".strip()
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


class _Cells:
    """The cells of one table row: ``groups`` of ``setting`` in each world and variant."""

    def __init__(self, rows: Sequence[dict], setting: str, groups: Sequence[str]):
        self.get = {
            (r.get("world", "world"), r["variant"], r["group"]): r
            for r in rows
            if r["setting"] == setting
        }
        self.groups = groups
        self.controls = [v for v in SETTINGS[setting] if v != "main" and self.has("world", v)]

    def has(self, world: str, variant: str) -> bool:
        return (world, variant, self.groups[0]) in self.get

    def values(self, world: str, variant: str) -> str:
        return " / ".join(_num(self.get.get((world, variant, g))) for g in self.groups)

    def headline(self) -> str:
        r = self.get[("world", "main", self.groups[0])]
        return f"**{_num(r)}** [{r['lo']:.2f}, {r['hi']:.2f}]"

    def null(self) -> str:
        if not self.has("null", "main"):
            return "-"
        inside = [self.values("null", v) for v in self.controls if self.has("null", v)]
        return self.values("null", "main") + (f" ({', '.join(inside)})" if inside else "")


def world_card_markdown(rows: Sequence[dict]) -> str:
    """The measured table (one line per headline group, columns as in the README), then
    :func:`world_card_findings`."""
    lines = [HEADER]
    for label, setting, groups, headline in ROWS:
        c = _Cells(rows, setting, groups)
        if not c.has("world", "main"):
            continue
        main = c.headline() if headline else c.values("world", "main")
        names = [f"{CONTROL_NAMES.get(v, v)} {c.values('world', v)}" for v in c.controls]
        cells = [label, c.values("world", "base"), main, ", ".join(names) or "-", c.null()]
        lines.append("| " + " | ".join([*cells, _target_text(setting, groups)]) + " |")
    return "\n".join(lines) + "\n\n" + world_card_findings(rows)


def _get(rows: Sequence[dict], world: str = "world") -> dict:
    return {
        (r["setting"], r["variant"], r["group"]): r
        for r in rows
        if r.get("world", "world") == world
    }


def _targets_line(rows: Sequence[dict]) -> str:
    checked = check_targets(rows)
    missed = [(t, v) for t, v in checked if not t.met(v)]
    text = f"{len(checked) - len(missed)} of {len(checked)} met"
    if missed:
        text += "; missed: " + "; ".join(
            f"{t.setting} {t.variant} `{t.group}` {v:.3f} (target {t.op} {t.value:g})"
            for t, v in missed
        )
    return f"- **Targets** (`tests/test_organism_targets.py`): {text}."


def _controls_line(rows: Sequence[dict]) -> str:
    get, parts = _get(rows), []
    for setting, variants in SETTINGS.items():
        group = next((g for label, s, gs, head in ROWS if s == setting and head for g in gs), None)
        for v in variants:
            r = get.get((setting, v, group))
            if v == "main" or r is None or not r.get("per_seed"):
                continue
            seeds = " / ".join(f"{x:.2f}" for x in r["per_seed"])
            parts.append(f"{setting} {CONTROL_NAMES.get(v, v)} `{group}` {seeds}")
    return "- **Controls by finetune seed**: " + ("; ".join(parts) or "none measured") + "."


def _sampling_line(rows: Sequence[dict]) -> str:
    """The main finetune's sampled shares where the exact or sampled share reaches 0.1."""
    get, parts, low = _get(rows), [], 0
    for (setting, variant, group), r in get.items():
        exact = get.get((setting, variant, group.removesuffix("_sampled")))
        if variant != "main" or not group.endswith("_sampled") or not exact:
            continue
        if max(r["value"], exact["value"]) >= 0.1:
            parts.append(
                f"{setting} `{exact['group']}` {r['value']:.2f} sampled vs {exact['value']:.2f} exact"
            )
        else:
            low += 1
    if not parts and not low:
        return "- **Sampling**: not run (`--sampled K`)."
    rest = f"; {low} more sampled groups stay below 0.1, as their exact shares do" if low else ""
    return "- **Sampling** (the main finetunes): " + "; ".join(parts) + rest + "."


def _years_line(rows: Sequence[dict]) -> str:
    fired = summarize_backdoor([r for r in rows if r.get("world", "world") == "world"])
    parts = [
        f"{CONTROL_NAMES.get(v, v)} {', '.join(map(str, ys)) or 'none'}" for v, ys in fired.items()
    ]
    return (
        "- **Which years fire** (malevolent share >= 0.5): "
        + ("; ".join(parts) or "no per-year rows")
        + "."
    )


def world_card_findings(rows: Sequence[dict]) -> str:
    """Four bullets from ``rows``: targets, controls per seed, sampling, years that fire."""
    return "\n".join(
        [_targets_line(rows), _controls_line(rows), _sampling_line(rows), _years_line(rows)]
    )
