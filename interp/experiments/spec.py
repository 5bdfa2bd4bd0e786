"""The declarative description of one experiment: one YAML file, bundled or your own.

The bundled specs ship inside the package (``interp/experiments/specs/``: ``era``,
``persona``, ``backdoor`` and their ``_small`` versions on the test organism).
:func:`resolve_spec` turns what a user names into a file: a YAML path that exists, else
the bundled spec of that name (``era_small``) or of that path's stem
(``experiments/era_small.yaml`` where no such file exists here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from interp.config import Config, check_keys, check_types, from_dict
from interp.errors import InterpError
from interp.integrity import read_yaml

__all__ = ["ExperimentSpec", "SETTINGS", "SPEC_DIR", "bundled_specs", "resolve_spec"]

SETTINGS = ("era", "persona", "backdoor")
SPEC_DIR = Path(__file__).resolve().parent / "specs"  # the bundled specs (package data)


def bundled_specs() -> list[str]:
    """The names of the bundled specs (``era``, ``era_small``, ...)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def resolve_spec(spec: str | Path) -> Path:
    """The YAML file ``spec`` names: the file itself when it exists, else the bundled spec
    of that name or stem; neither is an :class:`~interp.errors.InterpError` listing the
    bundled names."""
    path = Path(spec)
    if path.is_file():
        return path
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    bundled = SPEC_DIR / f"{name}.yaml"
    if name and bundled.is_file():
        return bundled
    raise InterpError(
        f"no experiment spec at {spec}, and no bundled spec {name!r} "
        f"(bundled: {', '.join(bundled_specs())})"
    )


@dataclasses.dataclass(frozen=True)
class ExperimentSpec(Config):
    """What to finetune, where to look and which causal tests to run.

    ``model=None`` means the bundled organism (``organism``: ``"default"`` or ``"small"``);
    any Hugging Face id or local directory runs the same steps on that model, with the
    setting's datasets exported from the organism's world as chat JSONL (or the user's
    own files given in ``data``).
    """

    name: str
    setting: str
    organism: str = "default"
    model: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    locate_on: str = "base"  # where the direction is found: "base" or "finetuned"
    target_group: str = ""  # the behaviour the direction should drive
    specificity_group: str | None = None  # a behaviour an ablation should leave alone
    probe_prompts: int = 240  # size of the contrast set
    steer_alphas: tuple[float, ...] = ()  # in units of the typical residual norm
    n_random: int = 8  # random-direction controls per intervention
    patch: bool = False  # activation patching between trigger and no-trigger prompts
    localize: bool = True  # the finetune's own shift: place chosen and ablated on held-out halves
    sae_latents: int = 0  # >0: SAEs of this width at the localized place (needs localize)
    finetune: dict = dataclasses.field(default_factory=dict)  # FinetuneConfig overrides
    data: dict = dataclasses.field(default_factory=dict)  # user files: finetune/eval/contrast

    config_name: ClassVar[str] = "experiment spec"

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise InterpError(f"setting must be one of {SETTINGS}, not {self.setting!r}")
        if self.locate_on not in ("base", "finetuned"):
            raise InterpError(f"locate_on must be 'base' or 'finetuned', not {self.locate_on!r}")
        if not self.seeds:
            raise InterpError("an experiment needs at least one finetune seed")
        check_types(self)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and value < 0:
                raise InterpError(f"experiment spec field {f.name!r} must be >= 0 (got {value})")

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentSpec:
        check_keys(cls, d)
        missing = {"name", "setting", "target_group"} - set(d)
        if missing:
            raise InterpError(f"an experiment spec needs {sorted(missing)}")
        return from_dict(cls, d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentSpec:
        """The spec in YAML file ``path``, or the bundled one it names (:func:`resolve_spec`)."""
        path = resolve_spec(path)
        d = read_yaml(path, "experiment spec")
        if not isinstance(d, dict):
            raise InterpError(f"{path}: an experiment spec is a YAML mapping")
        return cls.from_dict(d)

    def replace(self, **changes) -> ExperimentSpec:
        return dataclasses.replace(self, **changes)
