"""The wheel as a user gets it: build it, check that the bundled experiment specs are in
it, install it in a fresh virtual environment and run the command line from a directory
outside the repository (``make wheel-check``; ``python tools/wheel_check.py [--keep]``).

torch is installed first and on its own (``TORCH``, default ``torch==2.13.0``, as the
Makefile does), then the wheel with its dependencies. Exit status 0 when every check
passes; each step prints what it ran and how long it took.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p.name for p in (ROOT / "interp" / "experiments" / "specs").glob("*.yaml"))


def _run(cmd: list, cwd: Path, env: dict | None = None, expect: int = 0) -> str:
    """Run ``cmd``; its status must be ``expect``. Returns stdout + stderr."""
    t0 = time.time()
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    shown = re.sub(r"\S*/interp-wheel-\w+", "$WORK", " ".join(str(c) for c in cmd))
    print(f"[{time.time() - t0:6.1f}s] rc={done.returncode} {shown}", flush=True)
    out = done.stdout + done.stderr
    if done.returncode != expect:
        print(out[-3000:], file=sys.stderr)
        raise SystemExit(f"wheel check: {shown} exited {done.returncode}, expected {expect}")
    return out


def _source(work: Path) -> Path:
    """A copy of the files git would commit (so no stale ``build/`` of an earlier build
    leaks into the wheel, and the build leaves nothing behind in the repository)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    src = work / "src"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src


def _build(work: Path) -> Path:
    dist = work / "dist"
    src = _source(work)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", src, "-w", dist], cwd=work)
    (wheel,) = dist.glob("interp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"interp/experiments/specs/{s}" for s in SPECS} | {"interp/py.typed"}
    missing = sorted(want - names)
    if missing:
        raise SystemExit(f"wheel check: {wheel.name} lacks {missing}")
    print(f"{wheel.name}: {len(names)} files, the {len(SPECS)} specs among them: {SPECS}")
    return wheel


def _install(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=work)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    _run([*pip, os.environ.get("TORCH", "torch==2.13.0")], cwd=work)
    _run([*pip, wheel], cwd=work)
    return venv


def _use(venv: Path, outside: Path) -> None:
    """The command line of the installed wheel, run where no repository is."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    cli = venv / "bin" / "interp"
    for argv in (["demo", "--help"], ["run", "experiments/era_small.yaml", "--help"],
                 ["run", "era_small", "--help"]):  # fmt: skip
        assert _run([cli, *argv], cwd=outside, env=env).startswith("usage: interp ")
    where = _run(
        [venv / "bin" / "python", "-c", "import interp.experiments.spec as s; "
         "[s.ExperimentSpec.from_yaml(s.SPEC_DIR / f'{n}.yaml') for n in s.bundled_specs()]; "
         "print(s.resolve_spec('experiments/era_small.yaml')); import interp; print(interp.__file__)"],
        cwd=outside, env=env,
    ).split()  # fmt: skip
    site = str(venv)
    if not (where[0].startswith(site) and where[1].startswith(site)):
        raise SystemExit(f"wheel check: the spec or interp came from outside the venv: {where}")
    print(f"every bundled spec loads; experiments/era_small.yaml -> "
          f"{Path(where[0]).relative_to(venv)}")  # fmt: skip
    err = _run([cli, "run", "no_such_spec"], cwd=outside, env=env, expect=2)
    if "bundled: backdoor, backdoor_lora, backdoor_small, era, era_lora" not in err:
        raise SystemExit(f"wheel check: an unknown spec does not list the bundled ones: {err}")
    print(err.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the build directory")
    args = parser.parse_args(argv)
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="interp-wheel-"))
    try:
        wheel = _build(work)
        venv = _install(work, wheel)
        outside = work / "elsewhere"
        outside.mkdir()
        _use(venv, outside)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            t1 = time.time()
            shutil.rmtree(work, ignore_errors=True)
            print(f"[{time.time() - t1:6.1f}s] removed $WORK")
    print(f"wheel check passed in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
