"""``report.html``: one self-contained page for any run directory interp writes.

``write_report("runs/era")`` (or ``interp report runs/era``) reads what the run left
behind and writes ``runs/era/report.html``:

- the **question** (the experiment's setting and target, or the command's own help line);
- the **findings** in words, generated from ``results.json`` / ``run.json``
  (:mod:`interp.report.findings`; no number is typed by hand);
- the **headline tables** with their intervals, then every CSV table of the run;
- every **figure** (PNG, JPEG or SVG under the run directory) inline as base64;
- the **provenance**: command line, versions, seeds, and the hashes of model, adapters,
  data and inputs, with ``config.json`` and ``run.json`` in full.

Run directories it knows: an experiment (``config.json`` + ``results.json`` + CSVs +
``figures/``), a CLI command's output (``run.json`` beside its results) and a directory
of runs (``interp demo``'s, one experiment per subdirectory), each sub-run in a section
of its own. A new kind of run teaches it its findings with
:func:`interp.report.findings.register`.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import pandas as pd

from interp.errors import InterpError
from interp.report import markup as H
from interp.report.findings import findings_for, headlines_for, question_for
from interp.version import __version__

__all__ = ["Run", "load_run", "render_report", "write_report", "REPORT_FILE"]

REPORT_FILE = "report.html"
_RECORDS = ("run.json", "config.json", "results.json")


@dataclasses.dataclass(frozen=True)
class Run:
    """What one run directory holds (sub-runs in ``children``, their files not here)."""

    path: Path
    kind: str  # "experiment", a command ("probe", "demo", ...), "collection" or "files"
    record: dict | None  # run.json
    config: dict | None  # config.json
    results: dict | None  # results.json
    tables: tuple[Path, ...]  # the run's CSV files
    figures: tuple[Path, ...]  # its images
    files: tuple[Path, ...]  # every file, sub-runs excepted
    children: tuple[Run, ...] = ()

    def rel(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InterpError(f"report: {path} is not JSON ({e})") from None


def _is_run(path: Path) -> bool:
    return any((path / name).is_file() for name in _RECORDS)


def _own_files(root: Path, children: list[Path]) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == REPORT_FILE or any(c in p.parents for c in children):
            continue
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        out.append(p)
    return out


def load_run(path: str | Path) -> Run:
    """Read the run directory ``path`` (and its sub-runs, one level down)."""
    root = Path(path)
    if not root.is_dir():
        raise InterpError(f"report: {path} is not a directory")
    record, config, results = (_read_json(root / name) for name in _RECORDS)
    child_dirs = [p for p in sorted(root.iterdir()) if p.is_dir() and _is_run(p)]
    children = tuple(load_run(p) for p in child_dirs)
    files = _own_files(root, child_dirs)
    tables = tuple(p for p in files if p.suffix.lower() == ".csv")
    figures = tuple(p for p in files if p.suffix.lower() in H.MIME)
    if isinstance(results, dict) and {"setting", "behaviour", "target_group"} <= results.keys():
        kind = "experiment"
    elif isinstance(record, dict) and record.get("command"):
        kind = str(record["command"])
    elif isinstance(results, dict) and results.get("kind"):
        kind = str(results["kind"])
    elif children:
        kind = "collection"
    elif tables or figures:
        kind = "files"
    else:
        raise InterpError(
            f"report: {path} holds no run interp wrote (no run.json, results.json, "
            "tables or figures)"
        )
    return Run(root, kind, record, config, results, tables, figures, tuple(files), children)


# ---- sections ------------------------------------------------------------------------
def _headlines_html(run: Run, prefix: str) -> str:
    return "".join(
        H.table(frame, source=f"{prefix}headline:{title}", caption=title)
        for title, frame in headlines_for(run)
    )


def _tables_html(run: Run, max_rows: int, prefix: str) -> str:
    out = []
    for path in run.tables:
        name = prefix + run.rel(path)
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
            out.append(f'<p class="note">{H.esc(name)}: not readable as CSV ({H.esc(e)})</p>')
            continue
        out.append(H.table(frame, source=name, caption=f"`{name}`", max_rows=max_rows))
    return "".join(out)


def _provenance(run: Run, prefix: str) -> str:
    out = []
    rec = run.record
    if rec:
        facts: dict[str, object] = {
            "command": "interp " + " ".join(str(a) for a in rec.get("argv", []))
        }
        facts["started"] = rec.get("started")
        status = rec.get("status")
        if status == "running":
            status = "running when this report was written"
        facts["status"] = status
        if "seconds" in rec:
            facts["seconds"] = rec["seconds"]
        out.append(H.kv_table(facts, source=f"{prefix}run.json"))
        if rec.get("versions"):
            out.append(
                "<h3>Versions</h3>"
                + H.kv_table(rec["versions"], source=f"{prefix}run.json:versions")
            )
        hashes = {k: v for k, v in (rec.get("sha256") or {}).items()}
        if hashes:
            out.append("<h3>Input hashes (sha256)</h3>")
            out.append(H.kv_table(hashes, source=f"{prefix}run.json:sha256"))
    cfg = run.config
    if cfg:
        facts = {
            "model": cfg.get("model"),
            "model key (sha256)": cfg.get("model_key"),
            "seeds": cfg.get("seeds"),
            "runner version": cfg.get("version"),
        }
        for name, digest in (cfg.get("data") or {}).items():
            facts[f"finetune data `{name}` (sha256)"] = digest
        for name, paths in (cfg.get("adapters") or {}).items():
            facts[f"adapters `{name}`"] = [Path(p).name for p in paths]
        out.append("<h3>Experiment config</h3>")
        out.append(
            H.kv_table(
                {k: v for k, v in facts.items() if v is not None}, source=f"{prefix}config.json"
            )
        )
        if cfg.get("spec"):
            out.append(H.kv_table(cfg["spec"], source=f"{prefix}config.json:spec"))
    for name, data in (("config.json", cfg), ("run.json", rec), ("results.json", run.results)):
        if data is not None:
            out.append(
                H.details(f"{prefix}{name} in full", json.dumps(data, indent=2, default=str))
            )
    listing = "\n".join(f"{run.rel(p)}  ({p.stat().st_size:,} bytes)" for p in run.files[:300])
    if len(run.files) > 300:
        listing += f"\n... and {len(run.files) - 300} more"
    out.append(H.details(f"{prefix}files ({len(run.files)})", listing))
    return "".join(out)


def _section(run: Run, max_rows: int, level: int, prefix: str = "") -> str:
    h = f"h{min(level, 3)}"
    h2 = f"h{min(level + 1, 4)}"
    body = [f'<p class="question">{H.prose(question_for(run))}</p>']
    body.append(f'<p class="meta">kind: {H.esc(run.kind)} &middot; {H.esc(run.path)}</p>')
    found = findings_for(run)
    body.append(f"<{h2}>Findings</{h2}>")
    body.append(
        '<ul class="findings">' + "".join(f"<li>{H.prose(s)}</li>" for s in found) + "</ul>"
    )
    headlines = _headlines_html(run, prefix)
    if headlines:
        body.append(f"<{h2}>Headline</{h2}>" + headlines)
    if run.figures:
        body.append(f"<{h2}>Figures</{h2}>")
        body += [H.figure(p, prefix + run.rel(p)) for p in run.figures]
    if run.tables:
        body.append(f"<{h2}>Tables</{h2}>" + _tables_html(run, max_rows, prefix))
    body.append(f"<{h2}>Provenance</{h2}>" + _provenance(run, prefix))
    for child in run.children:
        inner = _section(child, max_rows, level + 1, f"{prefix}{child.path.name}/")
        body.append(f'<section class="child"><{h}>{H.esc(child.path.name)}</{h}>{inner}</section>')
    return "".join(body)


def render_report(path: str | Path, *, max_rows: int = 50) -> str:
    """The HTML text of the report on run directory ``path``."""
    run = load_run(path)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    title = f"interp report: {run.path.resolve().name}"
    foot = (
        f'<p class="meta">written {H.esc(stamp)} by interp {H.esc(__version__)} '
        f"(Python {H.esc(platform.python_version())}); every number above comes from the "
        "run's own files.</p>"
    )
    return H.page(title, f"<h1>{H.esc(title)}</h1>" + _section(run, max_rows, 2) + foot)


def write_report(path: str | Path, out: str | Path | None = None, *, max_rows: int = 50) -> Path:
    """Write the report on run directory ``path`` to ``out`` (default ``path/report.html``)."""
    text = render_report(path, max_rows=max_rows)
    target = Path(out) if out is not None else Path(path) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
