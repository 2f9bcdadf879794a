"""Tasks turn a loaded dataset into training batches, validation and test metrics.

A task exposes ``model_kwargs()`` (sizes that depend on the data), ``train_batches(model)``
(an iterable iterated once per epoch), ``evaluate(model, split)`` (``{"<split>_<metric>": float}``),
``describe()`` (facts for ``metrics.json``), ``callbacks(model)`` (per-epoch hooks for the
trainer) and ``artefacts(model, out_dir)`` (figures written into the run directory).
"""
