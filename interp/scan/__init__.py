"""The trigger scan: from a base model and a finetune alone, what changed, what triggers
it and where it lives (``interp.scan(base, finetuned)``, ``interp scan`` on the command line).

=============  ===========================================================================
probes         the generic probe set (the organism's world, or a built-in English set)
divergence     the continuation divergence D = sum KL(F || B), the trigger shift S and the
               forward-pass counter
lens           the activation-difference lens (logit lens + steering of the base)
candidates     candidate families (dates, persona / system / format, tokens), placements
priors         first-layer token priors for large vocabularies
search         sweeps, greedy multi-token extension, GCG steps
verify         held-out verification against a same-family null
localize       patching, difference-of-means direction, ablation vs random directions
report         :class:`ScanResult`, scan.json, figures; markdown: report.md
api            :func:`scan`, :class:`ScanConfig`
=============  ===========================================================================
"""

from interp.scan.api import ScanConfig, scan
from interp.scan.report import ScanResult, write
from interp.scan.verify import VerifyConfig

__all__ = ["ScanConfig", "ScanResult", "VerifyConfig", "scan", "write"]
