"""Figures written as PNG files (matplotlib's object API: no global pyplot state).

- :mod:`~vgae_toolkit.plots.history`: training and validation curves of any run (:func:`plot_history`).
- :mod:`~vgae_toolkit.plots.images`: image grids.
- :mod:`~vgae_toolkit.plots.graph`: latent t-SNE and ROC/PR curves of graph runs
  (``python -m vgae_toolkit.plots.graph``).
- :mod:`~vgae_toolkit.plots.vae`: the VAE paper's figures (``python -m vgae_toolkit.plots.vae``).

The graph and VAE modules are imported on use: they load scikit-learn and the checkpoint tools.
"""
from vgae_toolkit.plots.history import plot_history, save_figure
from vgae_toolkit.plots.images import image_grid, save_image_grid

__all__ = ["image_grid", "plot_history", "save_figure", "save_image_grid"]
