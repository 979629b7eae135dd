"""Batched functional MLPs: weights carry arbitrary leading batch dimensions.

A weight of event shape ``(out, in)`` may arrive as ``(..., out, in)`` where ``...`` are particle, chain or
predictive-sample dimensions.  One call evaluates every member of the ensemble with a broadcasting
``einsum`` (no Python loop over particles), which is what lets one ODE solve integrate a whole ensemble.
"""
from collections import OrderedDict

import torch

__all__ = ["ACTIVATIONS", "BatchedMLP", "batched_linear"]

ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": torch.nn.functional.softplus,
    "silu": torch.nn.functional.silu,
    "elu": torch.nn.functional.elu,
    "sigmoid": torch.sigmoid,
}


def batched_linear(inp, weight, bias=None):
    """``inp @ weight^T + bias`` where ``weight`` is ``(..., out, in)`` and ``inp`` is ``(..., in)``.

    The leading dimensions of ``weight``, ``bias`` and ``inp`` broadcast against each other; a weight shared
    by many trajectories (batch size 1) is contracted as one matrix product rather than expanded.

    :param torch.Tensor inp: inputs of shape ``batch + (in,)``.
    :param torch.Tensor weight: weights of shape ``wbatch + (out, in)``.
    :param torch.Tensor bias: optional biases of shape ``bbatch + (out,)``.
    :rtype: torch.Tensor
    """
    wb = weight.dim() - 2
    ib = inp.dim() - 1
    if wb < ib:
        weight = weight.reshape((1,) * (ib - wb) + weight.shape)
    elif ib < wb:
        inp = inp.reshape((1,) * (wb - ib) + inp.shape)
    out = torch.einsum("...oi,...i->...o", weight, inp)
    if bias is not None:
        out = out + bias
    return out


class BatchedMLP:
    """A multilayer perceptron evaluated functionally with batched weights.

    Parameters are not stored on the object; they are passed as a mapping from site names such as
    ``"R.0.weight"`` / ``"R.0.bias"`` to tensors of shape ``batch + event_shape``.

    :param str name: prefix of the parameter names (e.g. ``"R"`` for the vector field).
    :param sizes: layer widths ``(in, hidden..., out)``.
    :param str activation: hidden activation, one of :data:`ACTIVATIONS`.
    :param str out_activation: optional activation applied to the output.

    Example::

        >>> net = BatchedMLP("R", (3, 16, 2))
        >>> params = net.init_params(torch.Generator().manual_seed(0))
        >>> params = {k: v.expand((8, 1) + v.shape) for k, v in params.items()}  # 8 particles, batch dims left
        >>> net(params, torch.randn(8, 5, 3)).shape  # of the inputs' 5 points (batch dims right-align)
        torch.Size([8, 5, 2])
    """

    def __init__(self, name, sizes, activation="tanh", out_activation=None):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"BatchedMLP {name!r}: sizes must be (in, ..., out) with positive widths, got {sizes}")
        for act in (activation, out_activation):
            if act is not None and act not in ACTIVATIONS:
                raise ValueError(f"BatchedMLP {name!r}: unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
        self.name = name
        self.sizes = sizes
        self.activation = activation
        self.out_activation = out_activation

    @property
    def num_layers(self):
        return len(self.sizes) - 1

    def param_shapes(self):
        """Ordered mapping ``site name -> event shape`` of every weight and bias (a new dict each call, made from
        one kept per name and sizes: a model evaluation asks for it several times)."""
        key = (self.name, self.sizes)
        if getattr(self, "_shapes", (None,))[0] != key:
            shapes = OrderedDict()
            for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
                shapes[f"{self.name}.{i}.weight"] = torch.Size((n_out, n_in))
                shapes[f"{self.name}.{i}.bias"] = torch.Size((n_out,))
            self._shapes = (key, shapes)
        return OrderedDict(self._shapes[1])

    def layer_of(self, site):
        """Index of the layer that parameter ``site`` belongs to."""
        return int(site.split(".")[-2])

    def init_params(self, generator=None, dtype=None, device=None):
        """Glorot-style random initial values (biases zero), a good starting point for MAP and VI.

        :param torch.Generator generator: drawn on the generator's device (so a seed gives the same values
            whatever the default device), then moved to ``device``.
        """
        params = OrderedDict()
        draw_on = generator.device if generator is not None else device
        for site, shape in self.param_shapes().items():
            if site.endswith("weight"):
                std = (1.0 / shape[1]) ** 0.5
                value = torch.randn(shape, generator=generator, dtype=dtype, device=draw_on) * std
                params[site] = value.to(device) if device is not None else value
            else:
                params[site] = torch.zeros(shape, dtype=dtype, device=device if device is not None else draw_on)
        return params

    def __call__(self, params, inp):
        """Evaluate the network.

        :param dict params: site name -> tensor ``batch + event_shape``; batch dims broadcast with ``inp``.
        :param torch.Tensor inp: inputs ``batch + (in,)``.
        :returns: outputs ``batch + (out,)``.
        """
        if inp.shape[-1] != self.sizes[0]:
            raise ValueError(f"BatchedMLP {self.name!r}: expected inputs with last dim {self.sizes[0]}, "
                             f"got shape {tuple(inp.shape)}")
        act = ACTIVATIONS[self.activation]
        out = inp
        for i in range(self.num_layers):
            out = batched_linear(out, params[f"{self.name}.{i}.weight"], params[f"{self.name}.{i}.bias"])
            if i < self.num_layers - 1:
                out = act(out)
        if self.out_activation is not None:
            out = ACTIVATIONS[self.out_activation](out)
        return out

    def __repr__(self):
        return f"BatchedMLP({self.name!r}, sizes={self.sizes}, activation={self.activation!r})"
