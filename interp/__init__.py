"""interp: locate learned triggers and latents inside finetuned language models.

The flow, top to bottom (see DESIGN.md); each stage is a folder that imports only from
itself and the stages above it (``tests/test_layout.py``), and this module re-exports it:

- models (the core, top-level modules): :func:`load_model`, :class:`Model`,
  :class:`ModelPair`; prompts: :class:`PromptSet` (metadata, tagged spans, contrast
  grids), chat JSONL and question-file readers; sites / hooks: the canonical site names
  (:mod:`interp.sites`) and the one hook engine every capture and intervention uses
  (:func:`interp.hooks.hooks`); :mod:`interp.backends`: the nnsight trace backend
- record: :func:`capture` -> :class:`Activations`, or an on-disk :class:`ActivationStore`
  (one process per device: :func:`capture_parallel`)
- metrics: :mod:`interp.metrics` (teacher-forced answer shares, sampled rates, judges)
- directions: :class:`Direction` / :class:`Subspace` value objects, :class:`LinearProbe`,
  :func:`probe_layers`, :func:`diff_of_means`, :func:`paired_pca`, SAEs in
  :mod:`interp.directions.sae`, :func:`latent_ranking`, :func:`model_diff`, :func:`project`
- causal: :func:`ablate`, :func:`steer` (context managers over operators in
  :mod:`interp.causal.operators`), random controls, :func:`patch` (exact and attribution)
  and its specialisations (:func:`patch_resid_pre`, ...), :func:`dose_response`,
  :func:`ablation_effect`; where a finetune's own shift lives (:func:`shift_subspace`,
  :func:`place_scan`, :func:`shift_ablation`)
- figures and reports: :mod:`interp.plots`, :mod:`interp.report` (they take results and
  never run a model)
- beside the flow: :mod:`interp.finetune`, the bundled model organism
  (:mod:`interp.organism`); on top of it: the trigger scan (:func:`scan`) and
  :mod:`interp.experiments`; last, the command line (:mod:`interp.cli`)
"""

import interp.backends  # noqa: F401  (registers load_model(backend="nnsight"))
from interp.causal.dose import ablation_effect, dose_response, reference_logprob
from interp.causal.interventions import (
    SAELatents,
    ablate,
    random_directions,
    random_like,
    residual_norm,
    steer,
)
from interp.causal.patching import (
    PatchResult,
    patch,
    patch_attn_out,
    patch_mlp_out,
    patch_resid_post,
    patch_resid_pre,
)
from interp.causal.shift import Shift, choose_place, place_scan, shift_ablation, shift_subspace
from interp.directions import Direction, Subspace
from interp.directions.diffmeans import diff_of_means, paired_pca
from interp.directions.probes import LinearProbe, probe_layers
from interp.directions.ranking import latent_ranking, model_diff, project, rank_latents
from interp.errors import InterpError
from interp.models import Model, ModelPair, load_model, wrap_model
from interp.positions import Span
from interp.prompts import PromptSet, read_chat_jsonl, write_chat_jsonl
from interp.questions import read_questions
from interp.record.activations import Activations
from interp.record.capture import capture
from interp.record.parallel import capture_parallel
from interp.record.store import ActivationStore
from interp.scan import ScanConfig, ScanResult, scan  # interp.scan is the function
from interp.sites import FAMILIES, Site, resolve_sites
from interp.version import __version__ as __version__

__all__ = [
    "Activations",
    "PatchResult",
    "ScanConfig",
    "ScanResult",
    "scan",
    "SAELatents",
    "ablate",
    "ablation_effect",
    "dose_response",
    "patch",
    "patch_attn_out",
    "patch_mlp_out",
    "patch_resid_post",
    "patch_resid_pre",
    "random_directions",
    "random_like",
    "reference_logprob",
    "residual_norm",
    "steer",
    "Shift",
    "choose_place",
    "place_scan",
    "shift_ablation",
    "shift_subspace",
    "Direction",
    "LinearProbe",
    "Subspace",
    "diff_of_means",
    "latent_ranking",
    "model_diff",
    "paired_pca",
    "probe_layers",
    "project",
    "rank_latents",
    "ActivationStore",
    "FAMILIES",
    "InterpError",
    "Model",
    "ModelPair",
    "PromptSet",
    "Site",
    "Span",
    "capture",
    "capture_parallel",
    "load_model",
    "read_chat_jsonl",
    "read_questions",
    "resolve_sites",
    "wrap_model",
    "write_chat_jsonl",
]
