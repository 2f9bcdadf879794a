"""vgae-toolkit: reproducible VAE and (V)GAE latent-variable auto-encoders."""

__version__ = "0.1.0"
