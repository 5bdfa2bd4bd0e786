"""Two ``bench_scan.py`` runs like for like: recall and false triggers on the finetunes
both scanned (the same cached finetunes when kinds, adapters and seeds match), and each
finetune's top findings side by side.

    .venv/bin/python benchmarks/bench_scan_compare.py runs/bench_scan_A runs/bench_scan_B
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _rows(out: Path) -> dict[tuple, dict]:
    lines = (out / "rows.jsonl").read_text().splitlines()
    return {(r["kind"], r["lora"], r["seed"]): r for r in map(json.loads, lines)}


def compare(a: Path, b: Path) -> str:
    ra, rb = _rows(a), _rows(b)
    keys = sorted(set(ra) & set(rb))
    if not keys:
        raise SystemExit(f"{a} and {b} scanned no finetune in common")
    out = []
    for name, rows in ((a, ra), (b, rb)):
        planted = [rows[k] for k in keys if rows[k]["recall3"] is not None]
        clean = [rows[k] for k in keys if rows[k]["false_triggers"] is not None]
        out.append(f"{name}: recall@1 {sum(r['recall1'] for r in planted)} / {len(planted)}, "
                   f"recall@3 {sum(r['recall3'] for r in planted)} / {len(planted)}, "
                   f"false findings {sum(r['false_triggers'] for r in clean)} on "
                   f"{len(clean)} clean scans")  # fmt: skip
    out.append("")
    out.append(
        "| kind | adapter | seed | recall@3 A | recall@3 B | false A | false B | top A | top B |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        x, y = ra[k], rb[k]
        out.append(f"| {' | '.join(map(str, k))} | {x['recall3']} | {y['recall3']} | "
                   f"{x['false_triggers']} | {y['false_triggers']} | {'; '.join(x['top'][:2])} | "
                   f"{'; '.join(y['top'][:2])} |")  # fmt: skip
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = p.parse_args(argv)
    print(compare(args.a, args.b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
