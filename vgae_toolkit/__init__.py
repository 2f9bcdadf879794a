"""vgae-toolkit: reproducible VAE and (V)GAE latent-variable auto-encoders.

The Python interface (:mod:`vgae_toolkit.api`): :func:`fit` trains on a dataset name or a
``torch_geometric.data.Data``, :func:`load` reads a finished run folder; both return a
:class:`Result`. The command line, ``python -m vgae_toolkit``, runs the same code.
"""

__version__ = "0.1.0"

__all__ = ["Result", "compose", "fit", "load", "__version__"]


def __getattr__(name: str):
    # imported on first use: `import vgae_toolkit` stays cheap, and the command line can set up
    # the process (vgae_toolkit/process.py) before torch is imported
    if name in ("Result", "compose", "fit", "load"):
        from vgae_toolkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'vgae_toolkit' has no attribute {name!r}")
