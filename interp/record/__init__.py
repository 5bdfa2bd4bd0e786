"""Record: activations at canonical sites, into memory or a resumable on-disk store.

===============  ===========================================================================
batches          tokenized capture batches; the one recording forward (stops after a site)
capture          :func:`~interp.record.capture.capture` -> ``Activations``, or a store
activations      :class:`~interp.record.activations.Activations`: tensor + row metadata
store            :class:`~interp.record.store.ActivationStore`: shards + manifest, read
                 whole or streamed
writers          the sinks a streaming capture fills: one process, or one part of several
parallel         :func:`~interp.record.parallel.capture_parallel`: a process per device
store_key        what identifies a capture in a store, and how two requests differ
reducers         streaming per-group means and norms over stores larger than RAM
===============  ===========================================================================

The public names are re-exported by :mod:`interp` (``interp.capture``,
``interp.Activations``, ``interp.ActivationStore``); this package re-exports nothing, so
that each module keeps its own name (``interp.record.capture`` is the module).
"""

__all__: list[str] = []
