"""The README's generated sections: markers present, content shaped as the generators write it.

The fixtures under ``tests/data/`` are real outputs of the pipeline on the small organism
(finetune seed 0): each experiment's ``results.json`` (``interp run``) and the world
card's rows (``interp world-card``, trimmed to the groups its table shows). The generators
run on them, and the README's sections must have the same block structure (tables with
the same header, row count and cell count, paragraphs, bullets with the same bold leads):
``make readme`` replaces a section with generated text, and this test fails when the
README and the generators drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.errors import InterpError
from interp.experiments.readme import (
    markdown_shape,
    replace_section,
    section,
    update_readme,
)
from interp.experiments.summary import summary_markdown
from interp.experiments.worldcard_markdown import world_card_markdown

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def demo_md() -> str:
    results = {
        name: json.loads((DATA / "demo_results" / name / "results.json").read_text())
        for name in ("era", "persona", "backdoor")
    }
    return summary_markdown(results, organism="small")


@pytest.fixture(scope="module")
def card_md() -> str:
    rows = json.loads((DATA / "world_card_rows.json").read_text())["rows"]
    return "<!-- interp world-card: config=small seeds=0 worlds=world -->\n" + world_card_markdown(
        rows
    )


def test_readme_sections_have_the_generators_shape(demo_md, card_md):
    readme = (ROOT / "README.md").read_text()
    for name, generated in (("demo", demo_md), ("world-card", card_md)):
        want = markdown_shape(generated)
        assert want, name
        assert markdown_shape(section(readme, name)) == want, name


def test_generated_demo_summary_reads_every_experiment(demo_md):
    shape = markdown_shape(demo_md)
    table = shape[0]
    assert table[0] == "table" and table[2] == 3 and len(table[3]) == 1  # one row each
    assert shape[-1] == ("bullets", ("era", "persona", "year backdoor"))
    assert "random directions" in demo_md and "Patching the trigger into" in demo_md


def test_update_replaces_only_between_markers(tmp_path, demo_md, card_md):
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- demo:begin -->\nold table\n<!-- demo:end -->\nmiddle\n"
        "<!-- world-card:begin -->\nold card\n<!-- world-card:end -->\nend\n"
    )
    demo, card = tmp_path / "summary.md", tmp_path / "world_card.md"
    demo.write_text(demo_md)
    card.write_text(card_md)
    with pytest.raises(InterpError, match="small organism"):
        update_readme(readme, demo=demo, world_card=card)
    assert update_readme(readme, demo=demo, world_card=card, allow_small=True) == [
        "demo",
        "world-card",
    ]
    text = readme.read_text()
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("\nend\n")
    assert section(text, "demo") == demo_md.strip() and section(text, "world-card") == card_md
    again = replace_section(text, "demo", demo_md)
    assert again == text  # replacing with the same content changes nothing
    with pytest.raises(InterpError, match="needs one"):
        section("no markers", "demo")


def test_demo_writes_the_summary_and_keeps_time_apart(tmp_path, monkeypatch, capsys):
    """run_demo writes summary.md from the experiments' summaries and the wall times to
    timing.json alone: a second demo writes summary.md byte for byte the same."""
    import types

    import interp.experiments.demo as demo

    def fake_run(spec, out, workers=1):
        summary = json.loads((DATA / "demo_results" / spec.name / "results.json").read_text())
        return types.SimpleNamespace(summary=summary, out=out)

    monkeypatch.setattr(demo, "run_experiment", fake_run)
    out = tmp_path / "demo"
    assert demo.run_demo(out, quick=True, report=False) == 0
    first = (out / "summary.md").read_bytes()
    assert demo.run_demo(out, quick=True, report=False) == 0
    assert (out / "summary.md").read_bytes() == first
    assert first.decode().startswith("<!-- interp demo: organism=small seeds=0")
    timing = json.loads((out / "timing.json").read_text())["wall_s"]
    assert set(timing) == {"era", "persona", "backdoor", "total"}
    assert "| era | nonbird_old |" in capsys.readouterr().out


def test_world_card_findings_come_from_the_rows():
    """The four bullets under the world card's table say what the rows say."""
    from interp.experiments.worldcard import check_targets
    from interp.experiments.worldcard_markdown import world_card_findings

    rows = json.loads((DATA / "world_card_rows.json").read_text())["rows"]
    text = world_card_findings(rows)
    checked = check_targets(rows)
    met = sum(t.met(v) for t, v in checked)
    assert f"{met} of {len(checked)} met" in text
    undated = next(
        r
        for r in rows
        if (r["setting"], r["variant"], r["group"]) == ("backdoor", "undated", "malevolent_trigger")
    )
    assert " / ".join(f"{x:.2f}" for x in undated["per_seed"]) in text.split("backdoor undated")[1]
    # a backdoor year that reaches 0.5 is listed under its variant
    fired = [*rows, {**undated, "group": "malevolent_1959", "value": 0.7}]
    assert "undated 1959" in world_card_findings(fired)
    assert "not run (`--sampled K`)" in text  # these rows hold no sampled groups


def _sweep_frame():
    """A sweep table of the real grid's shape (shares made up: only the shape is tested)."""
    import pandas as pd

    from interp.experiments.lora_sweep import EMBEDDINGS, GRID, _label, _recipe

    recipes = [EMBEDDINGS] + [_label(_recipe(c)) for c in GRID]
    rows = [
        dict(
            setting=s,
            target_group=f"{s}_target",
            recipe=r,
            base=0.01,
            share=0.9 if i == 0 else 0.05 * i,
            questions=5,
        )  # fmt: skip
        for s in ("era", "persona", "backdoor")
        for i, r in enumerate(recipes)
    ]
    return pd.DataFrame(rows)


def test_lora_sweep_section_has_the_generators_shape():
    from interp.experiments.lora_sweep import sweep_markdown

    generated = sweep_markdown(_sweep_frame(), organism="default", seed=0)
    shape = markdown_shape(generated)
    assert shape[0][0] == "table" and shape[0][2] == 1 + len(_sweep_frame()) // 3
    assert shape[-1] == ("bullets", ("era", "persona", "backdoor"))
    assert generated.count("does not reach half the embeddings-only share (0.90 / 2") == 3
    readme = (ROOT / "README.md").read_text()
    got = markdown_shape(section(readme, "lora-sweep"))

    def blocks(sh):  # the header names the real target groups and their question counts
        return [b[:1] + b[2:] if b[0] == "table" else b for b in sh]

    assert blocks(got) == blocks(shape)
    assert got[0][1].startswith("| recipe (select half, seed 0) | era: nonbird_old (")


def test_a_source_goes_only_into_its_own_section(tmp_path, demo_md):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- demo:begin -->\nx\n<!-- demo:end -->\n"
                      "<!-- demo-lora:begin -->\ny\n<!-- demo-lora:end -->\n")  # fmt: skip
    lora = tmp_path / "lora.md"
    lora.write_text(demo_md.replace("organism=small", "organism=small finetune=lora", 1))
    with pytest.raises(InterpError, match="holds the demo-lora section, not demo"):
        update_readme(readme, demo=lora, allow_small=True)
    assert update_readme(readme, demo_lora=lora, allow_small=True) == ["demo-lora"]
    assert section(readme.read_text(), "demo-lora").startswith(
        "<!-- interp demo: organism=small finetune=lora seeds=0"
    )


def _bench_scan():
    """``benchmarks/bench_scan.py`` as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    import sys

    path = ROOT / "benchmarks" / "bench_scan.py"
    spec = importlib.util.spec_from_file_location("bench_scan", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_scan", module)
    spec.loader.exec_module(module)
    return module


def test_bench_scan_section_has_the_generators_shape(tmp_path):
    """The scan section is ``bench_scan.py``'s ``summary.md``, here rebuilt from the rows and
    ``scan.json`` files of a real run (``tests/data/bench_scan``, trimmed to what it reads);
    the targets' bullets say met or not from the rows."""
    import shutil

    bench = _bench_scan()
    out = tmp_path / "bench_scan"
    shutil.copytree(DATA / "bench_scan", out)
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    text = bench._summary(out, rows, "default")
    assert text.startswith("<!-- interp bench-scan: organism=default seeds=")
    assert (out / "summary.md").read_text() == text
    shape = markdown_shape(text)
    assert shape[0][0] == "table" and shape[0][2] == len({(r["kind"], r["lora"]) for r in rows})
    assert ("bullets", ("recall@3", "clean finetunes", "time")) in shape
    assert shape[-1][0] == "table" and shape[-1][2] == len(bench.SETTINGS_RUN)
    readme = (ROOT / "README.md").read_text()
    assert markdown_shape(section(readme, "bench-scan")) == shape
    # a target is met only when the rows meet it
    perfect = [{**r, "recall3": True if r["recall3"] is not None else None,
                "false_triggers": 0 if r["false_triggers"] is not None else None,
                "seconds": 60.0} for r in rows]  # fmt: skip
    bullets = bench._targets(perfect)
    assert "not met" not in bullets and bullets.count(": met") == 3
    assert bench._targets([{**perfect[0], "seconds": 301.0}]).count("**not met**") == 1
