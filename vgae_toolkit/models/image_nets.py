"""The networks of the image models: encoders q(z|x) and decoder bodies, as MLPs or convolutions.

An encoder maps flat images ``[batch, H * W (+ extra)]`` (the extra columns: a CVAE's one-hot label) to a
:class:`~vgae_toolkit.models.latent.Posterior`. A decoder body maps ``[..., latent (+ extra)]`` to
features, and its ``head(output_dim)`` makes one output layer from those features to ``[..., H * W]``
values; a likelihood (:mod:`vgae_toolkit.models.image_decoders`) asks for one head per parameter.

``model/encoder=mlp`` is AEVB's MLP (Kingma & Welling 2014, App. C). ``model/encoder=conv`` puts 4x4,
stride-2, padding-1 convolutions in front of the MLP layers, each halving height and width (the
DCGAN layers of Radford et al. 2016, https://arxiv.org/abs/1511.06434); its decoder mirrors them with
transposed convolutions, each doubling height and width back.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.latent import Posterior

ACTIVATIONS = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "softplus": nn.Softplus, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
}
# The encoders ``model/encoder=...`` may pick for an image model (conf/model/encoder/{mlp,conv}.yaml).
IMAGE_ENCODERS = {"mlp": (), "conv": ("channels",)}  # name -> the options its config may set
KERNEL, STRIDE, PADDING = 4, 2, 1  # DCGAN's layers: an even size halves exactly, and doubles back


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class MLPBody(nn.Sequential):
    """Hidden layers only (Linear + activation each); ``width`` is the size of what it returns.

    Args:
        in_dim (int): input size.
        hidden (Sequence[int]): hidden widths; empty = the identity.
        activation (str): a key of :data:`ACTIVATIONS`.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], activation: str) -> None:
        _activation(activation)  # an unknown name fails here, hidden layers or not
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), _activation(activation)]
            in_dim = width
        super().__init__(*layers)
        self.width = in_dim

    def head(self, output_dim: int) -> nn.Module:
        """A linear output layer, ``[..., width] -> [..., output_dim]``."""
        return nn.Linear(self.width, output_dim)


def mlp(in_dim: int, hidden: Sequence[int], activation: str) -> MLPBody:
    """Hidden layers only (Linear + activation each); the output heads are added by the caller."""
    return MLPBody(in_dim, hidden, activation)


def conv_sizes(image_shape: Sequence[int] | None, channels: Sequence[int]) -> tuple[int, int, int, int]:
    """``(H, W, h, w)``: the image size and that of the smallest feature map after ``len(channels)`` halvings.

    Raises:
        ConfigError: no image shape is known, no channels are given, or H or W does not divide by
            ``2 ** len(channels)`` (Frey Face's 28 x 20 takes two layers, MNIST's 28 x 28 two).
    """
    if image_shape is None or len(image_shape) != 2:
        raise ConfigError("model/encoder=conv needs the images' height and width (image_shape); "
                          "the image task passes them, a model built by hand must too")
    if not channels:
        raise ConfigError("model.encoder.channels is empty: a conv encoder needs at least one layer "
                          "(or use model/encoder=mlp)")
    height, width = map(int, image_shape)
    factor = 2 ** len(channels)
    if height % factor or width % factor:
        raise ConfigError(
            f"model/encoder=conv halves height and width {len(channels)} times (model.encoder.channels="
            f"{list(channels)}), so both must divide by {factor}, but the images are {height} x {width}; "
            f"use fewer model.encoder.channels or model/encoder=mlp")
    return height, width, height // factor, width // factor


class ConvEncoderBody(nn.Module):
    """Stride-2 convolutions over the image, then MLP layers over the flattened maps (and the extra columns).

    Args:
        input_dim (int): ``H * W`` plus any extra columns (a CVAE's one-hot label).
        image_shape (Sequence[int]): ``(H, W)``.
        channels (Sequence[int]): output channels of each convolution (one input channel: grey levels).
        hidden (Sequence[int]): widths of the MLP layers after the convolutions.
        activation (str): after every layer.
    """

    def __init__(self, *, input_dim: int, image_shape: Sequence[int], channels: Sequence[int],
                 hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        height, width, h, w = conv_sizes(image_shape, channels)
        self.shape, self.pixels = (height, width), height * width
        if input_dim < self.pixels:
            raise ConfigError(f"model/encoder=conv: {input_dim} inputs cannot hold {height} x {width} images")
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, KERNEL, STRIDE, PADDING), _activation(activation)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.mlp = MLPBody(c_in * h * w + input_dim - self.pixels, hidden, activation)
        self.width = self.mlp.width

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        images = x[..., : self.pixels].reshape(-1, 1, *self.shape)  # [rows, 1, H, W]
        maps = self.convs(images).flatten(1).reshape(*lead, -1)  # [..., C * h * w]
        return self.mlp(torch.cat([maps, x[..., self.pixels:]], dim=-1))  # [..., width]


class ConvDecoderBody(nn.Module):
    """The conv encoder mirrored: MLP layers, a linear layer to the smallest maps, transposed convolutions.

    It returns maps of half the image's height and width, ``[..., channels[0], H / 2, W / 2]``; the
    last transposed convolution, to one value per pixel, is each likelihood's ``head``.

    Args:
        input_dim (int): size of z plus any extra columns.
        image_shape (Sequence[int]): ``(H, W)``.
        channels (Sequence[int]): the encoder's channels, in the encoder's order.
        hidden (Sequence[int]): widths of the MLP layers before the maps (the encoder's, reversed).
        activation (str): after every layer but the head.
    """

    def __init__(self, *, input_dim: int, image_shape: Sequence[int], channels: Sequence[int],
                 hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        height, width, h, w = conv_sizes(image_shape, channels)
        self.shape, self.smallest = (height, width), (channels[-1], h, w)
        self.mlp = MLPBody(input_dim, hidden, activation)
        self.to_maps = nn.Sequential(nn.Linear(self.mlp.width, channels[-1] * h * w), _activation(activation))
        layers: list[nn.Module] = []
        backwards = list(channels)[::-1]
        for c_in, c_out in zip(backwards, backwards[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, KERNEL, STRIDE, PADDING), _activation(activation)]
        self.deconvs = nn.Sequential(*layers)
        self.out_channels = channels[0]

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        maps = self.to_maps(self.mlp(z)).reshape(-1, *self.smallest)  # [rows, C, h, w]
        out = self.deconvs(maps)  # [rows, channels[0], H / 2, W / 2]
        return out.reshape(*lead, *out.shape[1:])

    def head(self, output_dim: int) -> nn.Module:
        """The last transposed convolution, to one channel, flattened: ``[..., H * W]``."""
        if output_dim != self.shape[0] * self.shape[1]:
            raise ConfigError(f"a conv decoder makes {self.shape[0]} x {self.shape[1]} values, not {output_dim}")
        return ConvHead(self.out_channels)


class ConvHead(nn.Module):
    """One transposed convolution to a single channel; leading dims are kept, pixels flattened."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, 1, KERNEL, STRIDE, PADDING)

    def forward(self, maps: Tensor) -> Tensor:
        lead = maps.shape[:-3]
        out = self.deconv(maps.reshape(-1, *maps.shape[-3:]))  # [rows, 1, H, W]
        return out.reshape(*lead, -1)  # [..., H * W]


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mu, diag sigma^2): a body and two linear heads (AEVB App. C.2).

    With ``variational=False`` there is no log-sigma head and the posterior is a point mass at mu
    (``Posterior.logstd is None``): the encoder of a deterministic auto-encoder.

    Args:
        body (nn.Module): features ``[batch, body.width]`` from the input.
        latent_dim (int): size of z.
        variational (bool): add the log-sigma head. (default: ``True``)
    """

    def __init__(self, body: nn.Module, *, latent_dim: int, variational: bool = True) -> None:
        super().__init__()
        self.body = body
        self.mu = nn.Linear(body.width, latent_dim)
        # The head predicts log sigma (not log sigma^2), as Posterior expects.
        self.logstd = nn.Linear(body.width, latent_dim) if variational else None

    def forward(self, x: Tensor) -> Posterior:
        h = self.body(x)  # [batch, width]
        return Posterior(self.mu(h), None if self.logstd is None else self.logstd(h))  # [batch, latent] each


class MLPEncoder(GaussianEncoder):
    """q(z|x) from an MLP (AEVB App. C.2).

    Args:
        input_dim (int): size of the (flattened, possibly label-augmented) input.
        latent_dim (int): size of z.
        hidden (Sequence[int]): hidden widths (paper: one layer, 500 MNIST / 200 Frey Face).
        activation (str): ``tanh`` (paper), ``relu``, ``elu``, ...
        variational (bool): ``False`` gives a point mass at mu. (default: ``True``)
    """

    def __init__(self, *, input_dim: int, latent_dim: int, hidden: Sequence[int], activation: str,
                 variational: bool = True) -> None:
        super().__init__(mlp(input_dim, hidden, activation), latent_dim=latent_dim, variational=variational)


class ConvEncoder(GaussianEncoder):
    """q(z|x) from :class:`ConvEncoderBody` (arguments as there, plus ``latent_dim`` and ``variational``)."""

    def __init__(self, *, input_dim: int, latent_dim: int, image_shape: Sequence[int], channels: Sequence[int],
                 hidden: Sequence[int], activation: str, variational: bool = True) -> None:
        body = ConvEncoderBody(input_dim=input_dim, image_shape=image_shape, channels=channels, hidden=hidden,
                               activation=activation)
        super().__init__(body, latent_dim=latent_dim, variational=variational)


def encoder_spec(spec: str | dict) -> tuple[str, dict]:
    """``(name, options)`` of ``model.encoder`` (a name or its config node), checked against :data:`IMAGE_ENCODERS`."""
    if not isinstance(spec, (str, dict)):
        raise ConfigError(f"model.encoder: an image model builds its own encoder from model/encoder= one of "
                          f"{sorted(IMAGE_ENCODERS)}; got a {type(spec).__name__} (encoder modules are for "
                          f"graph models)")
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name", "mlp")
    if name not in IMAGE_ENCODERS:
        raise ConfigError(f"model.encoder.name={name!r}: an image model takes model/encoder= one of "
                          f"{sorted(IMAGE_ENCODERS)} (gcn, gat, ... are graph encoders)")
    unknown = sorted(set(options) - set(IMAGE_ENCODERS[name]))
    if unknown:
        takes = ", ".join(f"model.encoder.{k}" for k in IMAGE_ENCODERS[name]) or "no options"
        raise ConfigError(f"model.encoder.{unknown[0]}: unknown key; model/encoder={name} takes {takes}")
    return name, options


def make_nets(spec: str | dict, *, input_dim: int, extra: int, latent_dim: int, hidden: Sequence[int],
              activation: str, variational: bool, image_shape: Sequence[int] | None) -> tuple[nn.Module, nn.Module]:
    """The encoder and the decoder body that ``model.encoder`` names, the decoder mirroring the encoder.

    Args:
        spec (str or dict): ``mlp``, ``conv`` or a config node ``{"name": ..., "channels": [...]}``.
        input_dim (int): pixels per image; ``extra`` more columns (a one-hot label) go into both nets.
        hidden (Sequence[int]): the encoder's MLP widths; the decoder takes them reversed.
    """
    name, options = encoder_spec(spec)
    if name == "mlp":
        encoder = MLPEncoder(input_dim=input_dim + extra, latent_dim=latent_dim, hidden=hidden,
                             activation=activation, variational=variational)
        return encoder, mlp(latent_dim + extra, hidden[::-1], activation)
    channels = list(options.get("channels", (32, 64)))
    common = {"image_shape": image_shape, "channels": channels, "activation": activation}
    encoder = ConvEncoder(input_dim=input_dim + extra, latent_dim=latent_dim, hidden=hidden,
                          variational=variational, **common)
    return encoder, ConvDecoderBody(input_dim=latent_dim + extra, hidden=hidden[::-1], **common)
