"""Tasks turn a loaded dataset into training batches, validation and test metrics.

A task exposes ``model_kwargs()`` (sizes that depend on the data), ``to(device)`` (moves what it
evaluates on and where its batches go; returns the task), ``train_batches(model, rank=0,
world_size=1)`` (an iterable iterated once per epoch; with several processes, this process's share
of every batch), ``evaluate(model, split)`` (``{"<split>_<metric>": float}``),
``describe()`` (facts for ``metrics.json``), ``callbacks(model)`` (per-epoch hooks for the
trainer) and ``artefacts(model, out_dir)`` (figures written into the run directory).
"""
