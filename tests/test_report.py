"""``report.html``: checked with an HTML parser against the run directory it describes.

Every figure file of the run is embedded (the base64 decodes to the file's bytes), every
CSV table is there with its rows, the page loads nothing from outside, and the findings'
numbers follow ``results.json`` (edit the results, and the words change).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from interp.errors import InterpError
from interp.report import load_run, render_report, write_report

ROOT = Path(__file__).resolve().parents[1]


class _Page(HTMLParser):
    """Images, tables (with their body rows as cell texts), list items, external refs."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.tables: list[dict] = []
        self.items: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_body = False
        self._li: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        for key in ("href", "src"):
            if tag in ("link", "script", "iframe", "img") and key in a:
                if not str(a[key]).startswith("data:"):
                    self.external.append(f"{tag} {a[key]}")
        if tag == "table":
            self.tables.append({**a, "header": [], "rows": []})
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "li":
            self._li = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            key = "rows" if self._in_body else "header"
            if key == "header":
                self.tables[-1]["header"] = self._row
            else:
                self.tables[-1]["rows"].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "li" and self._li is not None:
            self.items.append("".join(self._li))
            self._li = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._li is not None:
            self._li.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _check_run(page: _Page, run_dir: Path, prefix: str = "", max_rows: int = 50) -> None:
    """Every image and CSV under ``run_dir`` (sub-runs aside) is in ``page``, complete."""
    images = {i["data-source"]: i for i in page.images}
    tables = {t["data-source"]: t for t in page.tables}
    run = load_run(run_dir)
    figures = [
        p for p in run_dir.rglob("*.png") if not any(c.path in p.parents for c in run.children)
    ]
    assert figures, "the run has figures to embed"
    for png in figures:
        name = prefix + png.relative_to(run_dir).as_posix()
        assert name in images, f"{name} not embedded"
        src = images[name]["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == png.read_bytes(), name
    for csv in run.tables:
        name = prefix + csv.relative_to(run_dir).as_posix()
        assert name in tables, f"table {name} missing"
        frame = pd.read_csv(csv)
        t = tables[name]
        assert t["header"] == list(frame.columns), name
        assert len(t["rows"]) == min(len(frame), max_rows), name
        assert int(t["data-total"]) == len(frame)
        assert all(len(r) == len(frame.columns) for r in t["rows"])
        for row, (_, want) in zip(t["rows"], frame.iterrows(), strict=False):
            assert all(_same(c, v) for c, v in zip(row, want, strict=True)), (name, row)


def _same(cell: str, value) -> bool:
    """A cell shows ``value`` (numbers to the 4 significant digits the page prints)."""
    if isinstance(value, float) and value != value:
        return cell == ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return abs(float(cell) - value) <= 1e-3 * max(1.0, abs(value))
    return cell == str(value)


@pytest.fixture(scope="module")
def era_run(tmp_path_factory, small_organism):
    from interp.experiments import run_experiment

    out = tmp_path_factory.mktemp("report") / "era_small"
    t0 = time.time()
    run_experiment("era_small", out=out)  # a bundled spec, by name
    print(f"era_small run: {time.time() - t0:.1f}s")
    return out


def test_report_of_an_experiment_run(era_run):
    path = write_report(era_run)
    assert path == era_run / "report.html"
    page = _parse(path.read_text())
    assert page.external == []  # self-contained
    _check_run(page, era_run)
    results = json.loads((era_run / "results.json").read_text())
    # the headline table: one row per variant, each with its interval
    (head,) = [t for t in page.tables if t["data-source"].startswith("headline:Behaviour")]
    assert [r[0] for r in head["rows"]] == list(results["behaviour"])
    main = results["behaviour"]["main"]
    assert f"{main['value']:.2f} [{main['lo']:.2f}, {main['hi']:.2f}]" in head["rows"][1]
    text = " ".join(page.items)
    assert f"most accurate at layer {results['layer']}" in text
    abl = results["ablation"][results["target_group"]]
    assert f"from {abl['none']:.2f} to {abl['ablated']:.2f}" in text
    # provenance: the model key, data hashes and seeds of config.json are on the page
    config = json.loads((era_run / "config.json").read_text())
    html = path.read_text()
    assert config["model_key"] in html and config["data"]["main"] in html
    assert "seeds" in html and ", ".join(map(str, config["seeds"])) in html


def test_findings_follow_the_results(era_run, tmp_path):
    """No hand-written numbers: changed results give changed words."""
    copy = tmp_path / "edited"
    shutil.copytree(era_run, copy)
    results = json.loads((copy / "results.json").read_text())
    results["layer"] = 7
    results["probe_accuracy"] = 0.123
    results["behaviour"]["main"].update(value=0.011, lo=0.001, hi=0.021)
    (copy / "results.json").write_text(json.dumps(results))
    text = " ".join(_parse(render_report(copy)).items)
    assert "most accurate at layer 7 (held-out accuracy 0.12)" in text
    assert "a share of 0.01 [0.00, 0.02]" in text
    assert "lies below the base model's" in text or "overlapping" in text


def test_report_of_a_directory_of_runs(era_run, tmp_path):
    """The demo's layout: run.json on top, one experiment per subdirectory."""
    import argparse

    from interp.cli.common import RunRecord

    top = tmp_path / "demo"
    args = argparse.Namespace(command="demo", argv=["demo", "--quick"], out=str(top), quick=True)
    record = RunRecord(args, top)  # the run directory is claimed first, as `interp demo` does
    for name in ("era", "era_copy"):
        shutil.copytree(era_run, top / name, ignore=shutil.ignore_patterns("report.html"))
    record.finish(exit_code=0)
    page = _parse(write_report(top).read_text())
    (glance,) = [t for t in page.tables if t["data-source"] == "headline:Experiments at a glance"]
    assert [r[0] for r in glance["rows"]] == ["era", "era_copy"]
    for name in ("era", "era_copy"):
        _check_run(page, top / name, prefix=f"{name}/")
    assert "interp demo --quick" in " ".join(c for t in page.tables for r in t["rows"] for c in r)


def test_report_of_cli_command_runs(tiny_dirs, tmp_path, capsys):
    from interp.cli import main

    model = tiny_dirs("llama")
    rows = [{"prompt": f"Today is {y}. {q}", "old": y < 2000} for q in ("Hi.", "A bird?")
            for y in (1838, 1850, 1984, 2017, 2025, 2031)]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    acts, probe = tmp_path / "acts", tmp_path / "probe"
    assert main(["-q", "capture", "--model", str(model), "--prompts", str(tmp_path / "p.csv"),
                 "--layers", "0", "1", "--device", "cpu", "--out", str(acts)]) == 0  # fmt: skip
    argv = ["-q", "probe", "--acts", str(acts), "--label", "old", "--cv", "3", "--out", str(probe)]
    assert main(argv) == 0
    assert main(["report", str(probe), "--max-rows", "1"]) == 0
    page = _parse((probe / "report.html").read_text())
    _check_run(page, probe, max_rows=1)
    summary = json.loads((probe / "run.json").read_text())["summary"]
    text = " ".join(page.items)
    assert f"most accurate at layer {summary['best_layer']}" in text
    assert f"held-out accuracy {summary['best_accuracy']:.2f}" in text
    # the question is the command's own --help line, which run.json keeps
    html = (probe / "report.html").read_text()
    assert "probe</code>: fit a linear probe per captured layer; write accuracy table" in html
    assert main(["report", str(acts)]) == 0  # a store: no tables, no figures, still a report
    assert "Captured 12 rows from 12 prompts at 2 sites" in (acts / "report.html").read_text()


def test_report_errors(tmp_path, capsys):
    from interp.cli import main

    with pytest.raises(InterpError, match="not a directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InterpError, match="holds no run"):
        load_run(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("interp: error: report:") and "not JSON" in err
    assert len(err.splitlines()) == 1


def test_demo_writes_its_report(era_run, tmp_path, monkeypatch, capsys):
    """``run_demo`` ends with ``report.html`` over its experiments (runner stubbed: the
    era run stands in for each of the three)."""
    import types

    import interp.experiments.demo as demo

    def run_experiment(spec, *, out, workers=1):
        shutil.copytree(era_run, out, ignore=shutil.ignore_patterns("report.html"))
        summary = json.loads((out / "results.json").read_text())
        return types.SimpleNamespace(summary=summary, out=out)

    monkeypatch.setattr(demo, "run_experiment", run_experiment)
    out = tmp_path / "demo"
    assert demo.run_demo(out=out, quick=True) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    page = _parse((out / "report.html").read_text())
    (glance,) = [t for t in page.tables if t["data-source"] == "headline:Experiments at a glance"]
    assert [r[0] for r in glance["rows"]] == sorted(demo.SPECS)  # sub-runs by name
    for name in demo.SPECS:
        _check_run(page, out / name, prefix=f"{name}/")
