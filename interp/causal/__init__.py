"""Causal tests: remove, add or swap an activation while the model runs, and measure.

==============  ============================================================================
operators       what an intervention does to one site's activation (project out, add, set)
interventions   :func:`~interp.causal.interventions.ablate` and
                :func:`~interp.causal.interventions.steer` (context managers), random controls
dose            :func:`~interp.causal.dose.dose_response`, :func:`~interp.causal.dose.ablation_effect`
patch_pairs     clean / corrupted prompt pairs: tokenized, aligned, position checks
replay          running the model from one block on, with some activations replaced
patching        :func:`~interp.causal.patching.patch`: exact and attribution patching
patch_engines   its two engines over one length group (block replay; a gradient)
patch_result    :class:`~interp.causal.patch_result.PatchResult`: the table of one patching run
shift           a finetune's own activation difference as a subspace, and its ablation
==============  ============================================================================

The public names are re-exported by :mod:`interp` (``interp.ablate``, ``interp.patch``, ...);
this package re-exports nothing.
"""

__all__: list[str] = []
