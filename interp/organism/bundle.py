"""The default organism as interp ships it: pretrained once, checked against a rebuild.

Pretraining the default organism takes about 11 minutes on two CPU cores, most of what
``interp demo`` would spend on a fresh machine. interp therefore ships that organism's
directory (``interp/organism/bundled/<config hash>/``, 11 MB) with a ``SHA256SUMS`` file.
:func:`~interp.organism.pretrain.build_organism` installs it into the cache when the
config asked for has the bundled hash, checking every file's sum first; any other config
(the small test organism, the null world, a config of your own) is pretrained as before.

The bundle is not a different model: pretraining is deterministic on the CPU, so a
rebuild reproduces it: :mod:`interp.organism.rebuild` (``make organism-check``) pretrains
the default config from scratch and compares every tensor with the bundled ones, and
replaces the bundle with a fresh pretraining after a change to the corpus, the training
code or the default config (``--write``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from interp.errors import IntegrityError
from interp.fingerprint import sha256_file
from interp.integrity import read_json

__all__ = ["BUNDLED", "bundled_dir", "install_bundled", "write_bundle"]

BUNDLED = Path(__file__).parent / "bundled"
SUMS = "SHA256SUMS"


def bundled_dir(config_hash: str, root: Path = BUNDLED) -> Path | None:
    """The shipped organism directory of this config hash, or ``None``."""
    path = root / config_hash
    return path if (path / SUMS).is_file() else None


def _sums(path: Path) -> dict[str, str]:
    return {
        f.name: sha256_file(f) for f in sorted(path.iterdir()) if f.is_file() and f.name != SUMS
    }


def _listed(path: Path) -> dict[str, str]:
    rows = (line.split() for line in (path / SUMS).read_text().splitlines() if line.strip())
    return {name: digest for digest, name in rows}


def install_bundled(src: Path, final: Path) -> Path:
    """Copy the bundle ``src`` to the cache directory ``final`` (through a temporary
    sibling, renamed at the end), every file checked against ``SHA256SUMS`` first."""
    listed, found = _listed(src), _sums(src)
    if listed != found:
        bad = sorted(n for n in listed.keys() | found.keys() if listed.get(n) != found.get(n))
        raise IntegrityError(f"bundled organism {src}: files {bad} do not match {SUMS}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        for name in listed:
            shutil.copyfile(src / name, tmp / name)
        if not final.exists():  # else another process installed it first
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_bundle(organism: Path, root: Path = BUNDLED) -> Path:
    """Ship the pretrained ``organism`` directory: copied to ``root/<hash>`` with sums."""
    config_hash = read_json(organism / "organism.json")["hash"]
    dest = root / config_hash
    for old in root.iterdir() if root.is_dir() else []:  # one organism ships, no stale one
        shutil.rmtree(old)
    shutil.copytree(organism, dest)
    (dest / SUMS).write_text("".join(f"{d}  {n}\n" for n, d in _sums(dest).items()))
    return dest
