"""Directions and subspaces in the residual stream, as value objects.

:class:`Direction` is a unit vector ``[d_model]`` with the site and layer it lives at, a
name, the magnitude of the raw vector it was made from (``scale``), and a provenance
dict (how it was found, on what data, with which model and adapter hash). Directions
support ``+``, ``-``, unary ``-``, scalar ``*`` and ``/`` (on ``scale * vector``; the
result is re-normalized), :meth:`Direction.cosine`, :meth:`Direction.to` (a copy) and
save / load as safetensors + JSON.

:class:`Subspace` is an orthonormal basis ``[k, d_model]`` built from directions or
tensors by SVD, so its projector (and therefore joint removal) does not depend on the
order or on the scaling of the vectors it was built from.

:func:`save_directions` / :func:`load_directions` write and read many directions (e.g.
one per layer from a probe sweep) as one ``.safetensors`` file plus one ``.json`` file.

The stage's other modules find directions (each imported by its own path):

===========  =================================================================================
probes       :class:`~interp.directions.probes.LinearProbe`, per-layer probe sweeps
diffmeans    :func:`~interp.directions.diffmeans.diff_of_means`, paired PCA, over stores too
sae          sparse autoencoders: architectures, training, loaders
ranking      latents and directions ranked by a base-vs-finetune difference; projections
===========  =================================================================================
"""

from __future__ import annotations

from interp.directions.direction import Direction, cosine, load_directions, save_directions
from interp.directions.subspace import Subspace

__all__ = ["Direction", "Subspace", "cosine", "save_directions", "load_directions"]
