"""Peak memory of reading an activation store whole vs streaming it.

A random-weight Llama-style model (d_model 512, 8 layers) is captured at every
``resid_post`` over every token of 512 prompts of 32 tokens into a store (one shard per
batch of 16), about 270 MB of float32. Each operation then runs in a fresh process, and
a thread samples that process's anonymous resident memory (``RssAnon``, which excludes
the file pages safetensors maps) every millisecond; the table gives the peak above the
process's baseline, in MB, next to the size of the store and of one site.

    .venv/bin/python benchmarks/bench_store_memory.py [--prompts 512] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import markdown_table

OPS = {
    "load() whole store": "store.load()",
    "site(one layer)": "store.site(3)",
    "diff_of_means(store, by=...)": "diff_of_means(store, by='trigger', site=3)",
    "diff_of_means(load(), by=...)": "diff_of_means(store.load(), by='trigger', site=3)",
    "mean_norms(store)": "mean_norms(store)",
    "mean_norms(load())": "mean_norms(store.load())",
    # memory does not depend on the Newton steps; 3 keep the run short
    "probe_layers(store)": "probe_layers(store, 'trigger', cv=2, max_iter=3)",
    "probe_layers(load())": "probe_layers(store.load(), 'trigger', cv=2, max_iter=3)",
}

CHILD = """
import threading, time, torch
torch.set_num_threads(1)
import interp
from interp.directions.diffmeans import diff_of_means
from interp.directions.probes import probe_layers
from interp.record.reducers import mean_norms

def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) * 1024

store = interp.ActivationStore({path!r})
peak, stop = [0], [False]
def sample():
    while not stop[0]:
        peak[0] = max(peak[0], anon())
        time.sleep(0.001)
base = anon()
t = threading.Thread(target=sample)
t.start()
t0 = time.perf_counter()
result = {op}
wall = time.perf_counter() - t0
stop[0] = True
t.join()
print((max(peak[0], anon()) - base) / 2**20, wall)
"""


def build_store(path: Path, n_prompts: int) -> None:
    import pandas as pd
    import torch

    import interp
    from interp.testing import tiny_model

    torch.set_num_threads(1)
    model = tiny_model("llama", d_model=512, n_layers=8, n_heads=8, vocab_size=384)
    words = "the bird is a merlin and the year is 1984 so name a species of hawk".split()
    texts = [" ".join(words[(i + k) % len(words)] for k in range(31)) for i in range(n_prompts)]
    meta = pd.DataFrame({"trigger": [i % 2 == 0 for i in range(n_prompts)]})
    interp.capture(
        model,
        interp.PromptSet(texts, meta),
        sites="resid_post",
        positions="all",
        batch_size=16,
        to=path,
        progress=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--keep", default=None, help="build the store here (and reuse it)")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp())
    path = root / "store"
    import interp

    if not interp.ActivationStore(path).complete:
        build_store(path, args.prompts)
    store = interp.ActivationStore(path)
    total = sum(f.stat().st_size for f in path.glob("shard-*.safetensors")) / 2**20
    n_rows, n_sites = len(store), len(store.sites)
    print(
        f"store: {n_rows} rows x {n_sites} sites x 512, {total:.0f} MB on disk, "
        f"{len(store.manifest['shards'])} shards; one site {total / n_sites:.0f} MB"
    )
    rows = []
    for name, op in OPS.items():
        code = CHILD.format(path=str(path), op=op)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        rows.append(
            {
                "operation": name,
                "peak MB": f"{float(out[0]):.0f}",
                "seconds": f"{float(out[1]):.2f}",
            }
        )
    print(markdown_table(rows, ["operation", "peak MB", "seconds"]))


if __name__ == "__main__":
    main()
