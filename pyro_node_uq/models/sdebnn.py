"""SDE-BNN: an infinite-depth Bayesian neural network whose weights follow an SDE over depth t in [0, 1].

Hidden units and weights are integrated together (Xu et al., 2022, "Infinitely deep Bayesian neural networks
with stochastic differential equations")::

    dh = f(h; w_t) dt                            f a BatchedMLP whose weights are the path w_t
    prior      dw = -w dt + sigma dB             (Ornstein-Uhlenbeck)
    posterior  dw = (-w + g_phi(t, w)) dt + sigma dB,  g_phi zero-initialised: posterior = prior at start

    ELBO = E_q[ log p(y | h_1) ] - E_q[ int_0^1 0.5 ||g_phi(t, w_t) / sigma||^2 dt ]

**Pyro formulation.**  The model samples the terminal features ``h_1`` of the N inputs from the prior path
law (one site ``"features"``, event ``(N, H)``, outside the data plate because the points share one weight
path) and the guide samples the same site from the posterior path law
(:class:`~pyro_node_uq.distributions.WeightPathFeatures`).  Path space has no Lebesgue density, so both
log-densities are taken relative to the prior path law: 0 in the model and the Girsanov log-ratio (the KL
integrand, accumulated inside the SDE solve) in the guide.  We chose this over a ``pyro.factor`` holding the
KL because (1) the model stays a genuine generative prior (``Predictive(model)`` gives prior functions), (2)
the variational drift lives only in the guide, so ``Predictive(model, guide=guide)`` and plain ``Trace_ELBO``
do the right thing with no custom loss, and (3) vectorised particles / parallel predictive samples set the
number of weight paths through Pyro's plates, as for any other latent site.

Input, readout and initial weights are point estimates (``pyro.module``); with ``stochastic=False`` the
weights follow the ODE ``dw = (-w + g_phi) dt`` with no diffusion and no KL: the ODE-net of the same
architecture that the SDE-BNN is compared against.
"""
import math

import pyro
import pyro.distributions as dist
import torch

from ..distributions import SDESolver, WeightPathFeatures, solve_weight_path
from ..nn import BatchedMLP, flatten_params
from ..validation import MAX_SIZE, check_choice, check_int, check_positive, check_widths
from .protocol import ProcessModel

__all__ = ["SDEBNN", "BottleneckDrift"]


def _linear(n_in, n_out, generator):
    """A ``torch.nn.Linear`` with Glorot-style weights from ``generator`` (so ``seed`` fixes the whole network)."""
    layer = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in))
        layer.bias.zero_()
    return layer


class BottleneckDrift(torch.nn.Module):
    """Time-conditioned, bottlenecked drift correction ``g_phi(t, w) = W2 act(W1 w + v t + b1) + b2``.

    The rank-``bottleneck`` factorisation keeps the cost linear in the weight dimension D.  ``W2`` starts at
    zero, so ``g_phi = 0`` and the posterior path law equals the prior until training moves it.

    :param int num_weights: the weight dimension D.
    :param int bottleneck: width of the hidden layer.
    :param str activation: hidden activation.
    :param torch.Generator generator: random source of the first layer.
    """

    def __init__(self, num_weights, bottleneck=32, activation="tanh", generator=None):
        super().__init__()
        self.net = BatchedMLP("g", (num_weights + 1, bottleneck, num_weights), activation)
        init = self.net.init_params(generator)
        init["g.0.weight"][:, -1] = torch.randn(bottleneck, generator=generator)  # time enters at unit scale
        init["g.1.weight"].zero_()
        self.keys = list(init)
        self.params = torch.nn.ParameterList([torch.nn.Parameter(v) for v in init.values()])

    def forward(self, t, w, detach=False):
        """``g_phi(t, w)`` for weights ``(..., D)``; ``detach=True`` stops gradients to phi (not to w)."""
        params = {k: (p.detach() if detach else p) for k, p in zip(self.keys, self.params)}
        t = torch.as_tensor(t, dtype=w.dtype, device=w.device).expand(w.shape[:-1] + (1,))
        return self.net(params, torch.cat([w, t], dim=-1))


class SDEBNN(ProcessModel, torch.nn.Module):
    """SDE-BNN for regression or classification as a Pyro model (:meth:`model`) plus guide (:meth:`guide`), a
    :class:`~pyro_node_uq.models.ProcessModel` on :class:`~pyro_node_uq.data.StaticSplit` s: fit it with
    :func:`~pyro_node_uq.methods.run_sdebnn` (SVI on its own guide) and predict with the result's
    :meth:`~pyro_node_uq.methods.MethodResult.predict`.

    :param int input_dim: number of input features.
    :param int output_dim: outputs (regression) or classes (classification).
    :param str likelihood: ``"regression"`` (Normal noise) or ``"classification"`` (Categorical).
    :param int hidden_dim: width of the hidden state h; default ``input_dim + 2`` for ``input_layer="augment"``.
    :param tuple width: hidden widths of the vector field ``f(h; w)`` whose weights are the SDE path.
    :param str input_layer: ``"augment"`` pads x with ``hidden_dim - input_dim`` zero channels (so the flow
        of a 1-D input can be non-monotone), ``"linear"`` is a learned map to ``hidden_dim``.
    :param str readout: ``"linear"`` (learned map ``hidden_dim -> output_dim``) or ``"first"`` (the first
        ``output_dim`` hidden channels).
    :param float sigma: diffusion of the weight paths (prior and posterior), positive.
    :param w0: initial weights: ``"learned"`` (a point estimate from a Glorot start), ``"fixed"`` (the Glorot
        start, not trained) or a tensor ``(D,)``.
    :param obs_scale: regression noise std: a positive float, or ``"learned"``.
    :param int bottleneck: width of :class:`BottleneckDrift`.
    :param str estimator: KL estimator, ``"plain"`` or ``"stl"`` (sticking the landing).
    :param solver: :class:`~pyro_node_uq.distributions.SDESolver` or dict of its options.
    :param bool stochastic: ``False`` gives the ODE-net of the same architecture (deterministic weights).
    :param str activation: activation of f.
    :param int seed: seed of the initial networks.
    :param str name: the ``pyro.module`` name of the point-estimated parameters.

    Example::

        >>> from pyro_node_uq.data import StaticSplit
        >>> from pyro_node_uq.methods import run_sdebnn
        >>> x = torch.linspace(-1, 1, 20)[:, None]
        >>> data = StaticSplit(x=x, y=torch.sin(3 * x) + 0.1 * torch.randn(20, 1))
        >>> result = run_sdebnn(SDEBNN(1, 1, width=(8,), solver={"dt": 0.25}), data, num_steps=2,
        ...                     progress_bar=False)
        >>> result.predict(data, num_samples=4)["obs"].shape
        torch.Size([4, 20, 1])
    """

    def __init__(self, input_dim, output_dim, likelihood="regression", hidden_dim=None, width=(32,),
                 input_layer="augment", readout="linear", sigma=0.1, w0="learned", obs_scale=0.1, bottleneck=32,
                 estimator="plain", solver=None, stochastic=True, activation="tanh", seed=0, name="sdebnn"):
        super().__init__()
        if likelihood not in ("regression", "classification"):
            raise ValueError(f"likelihood must be 'regression' or 'classification', got {likelihood!r}")
        if input_layer not in ("augment", "linear"):
            raise ValueError(f"input_layer must be 'augment' or 'linear', got {input_layer!r}")
        if readout not in ("linear", "first"):
            raise ValueError(f"readout must be 'linear' or 'first', got {readout!r}")
        input_dim, output_dim = check_int(input_dim, "input_dim", 1, MAX_SIZE), check_int(output_dim, "output_dim", 1,
                                                                                           MAX_SIZE)
        hidden_dim = (input_dim + 2 if input_layer == "augment" else 32) if hidden_dim is None else \
            check_int(hidden_dim, "hidden_dim", 1, MAX_SIZE)
        bottleneck = check_int(bottleneck, "bottleneck", 1, MAX_SIZE)
        width = check_widths(width, "width")
        check_choice(estimator, "estimator", ("plain", "stl"))
        if input_layer == "augment" and hidden_dim < input_dim:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be >= input_dim ({input_dim}) to augment with zeros")
        if readout == "first" and hidden_dim < output_dim:
            raise ValueError(f"readout='first' needs hidden_dim ({hidden_dim}) >= output_dim ({output_dim})")
        check_positive(sigma, "sigma (the weight diffusion)")
        if obs_scale != "learned":
            check_positive(obs_scale, "obs_scale (a positive float or 'learned')")
        self.input_dim, self.output_dim, self.hidden_dim = input_dim, output_dim, hidden_dim
        self.likelihood, self.input_layer, self.readout_kind = likelihood, input_layer, readout
        self.sigma, self.estimator, self.stochastic, self.name = float(sigma), estimator, stochastic, name
        self.solver = SDESolver.coerce(solver)
        gen = torch.Generator().manual_seed(seed)
        self.net = BatchedMLP("f", (hidden_dim, *width, hidden_dim), activation)
        self.shapes = self.net.param_shapes()
        start = flatten_params(self.net.init_params(gen), self.shapes)
        if torch.is_tensor(w0):
            if w0.shape != start.shape:
                raise ValueError(f"w0: expected initial weights of shape {tuple(start.shape)}, got {tuple(w0.shape)}")
            self.register_buffer("w0", w0.detach().clone())
        elif w0 == "learned":
            self.w0 = torch.nn.Parameter(start)
        elif w0 == "fixed":
            self.register_buffer("w0", start)
        else:
            raise ValueError(f"w0 must be 'learned', 'fixed' or a tensor, got {w0!r}")
        self.drift = BottleneckDrift(start.shape[0], bottleneck, generator=gen)
        self.inp = _linear(input_dim, hidden_dim, gen) if input_layer == "linear" else None
        self.out = _linear(hidden_dim, output_dim, gen) if readout == "linear" else None
        self.log_obs_scale = None
        if likelihood == "regression":
            scale = torch.tensor(0.1 if obs_scale == "learned" else float(obs_scale)).log()
            if obs_scale == "learned":
                self.log_obs_scale = torch.nn.Parameter(scale)
            else:
                self.register_buffer("fixed_log_obs_scale", scale)
        if estimator not in ("plain", "stl"):
            raise ValueError(f"estimator must be 'plain' or 'stl', got {estimator!r}")

    @property
    def num_weights(self):
        """Dimension D of the weight path."""
        return self.w0.shape[0]

    # ------------------------------------------------------------------ pieces
    def _check(self, x, y):
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x: expected a tensor of shape (N, {self.input_dim}), got "
                             f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        if not torch.isfinite(x).all():
            raise ValueError("x: inputs contain NaN or inf")
        x = x.to(self.w0.dtype)
        if y is None:
            return x, None
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"y: {y.shape[0]} targets but x has {x.shape[0]} rows")
        if self.likelihood == "classification":
            if y.dim() != 1 or y.dtype.is_floating_point:
                raise ValueError(f"y: expected integer class labels of shape (N,), got {tuple(y.shape)} {y.dtype}")
            if len(y) and (y.min() < 0 or y.max() >= self.output_dim):
                raise ValueError(f"y: class labels must lie in [0, {self.output_dim}), got [{int(y.min())}, "
                                 f"{int(y.max())}]")
            return x, y
        if y.dim() == 1 and self.output_dim == 1:
            y = y[:, None]
        if y.dim() != 2 or y.shape[-1] != self.output_dim:
            raise ValueError(f"y: expected targets of shape (N, {self.output_dim}), got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError("y: targets contain NaN or inf")
        return x, y.to(x.dtype)

    def initial_state(self, x):
        """Hidden units at depth 0, ``(N, hidden_dim)``: zero-augmented or linearly embedded inputs."""
        if self.inp is not None:
            return self.inp(x)
        return torch.cat([x, x.new_zeros(x.shape[0], self.hidden_dim - self.input_dim)], dim=-1)

    def head(self, h1):
        """Logits (classification) or means (regression) from the terminal hidden units."""
        return self.out(h1) if self.out is not None else h1[..., : self.output_dim]

    def path_law(self, x, posterior=True):
        """The :class:`~pyro_node_uq.distributions.WeightPathFeatures` of inputs ``x`` (posterior or prior)."""
        drift = self.drift if posterior else None
        return WeightPathFeatures(self.net, self.shapes, self.initial_state(x), self.w0, self.sigma, drift,
                                  self.solver, self.estimator)

    @property
    def obs_scale(self):
        return (self.log_obs_scale if self.log_obs_scale is not None else self.fixed_log_obs_scale).exp()

    # ------------------------------------------------------------------ Pyro model and guide
    def model(self, x, y=None):
        """The Pyro model: features from the OU prior path law, then the likelihood in plate ``"data"`` (dim -1).

        The plate follows Pyro's subsampling idiom: when the guide subsamples it (``subsample_size``), the model
        scores the same points, scaled to the full data.

        :param torch.Tensor x: inputs ``(N, input_dim)``.
        :param torch.Tensor y: targets ``(N, output_dim)`` (regression) or labels ``(N,)``; ``None`` samples.
        """
        pyro.module(self.name, self)
        x, y = self._check(x, y)
        plate = pyro.plate(self.data_plate, x.shape[0], dim=-1)
        x, y = x[plate.indices], None if y is None else y[plate.indices]
        if self.stochastic:
            h1 = pyro.sample("features", self.path_law(x, posterior=False))
            if h1.dim() > 2:  # batch (paths, 1): the trailing 1 is the data plate's dim
                h1 = h1.squeeze(-3)
        else:
            h1 = solve_weight_path(self.w0, self.sigma, 1, self.net, self.shapes, self.initial_state(x), self.drift,
                                   self.solver, stochastic=False)[0][0]
            pyro.deterministic("features", h1, event_dim=2)
        out = self.head(h1)
        with plate:
            if self.likelihood == "classification":
                pyro.deterministic("probs", out.softmax(-1), event_dim=1)
                return pyro.sample("obs", dist.Categorical(logits=out), obs=y)
            pyro.deterministic("y_mean", out, event_dim=1)
            return pyro.sample("obs", dist.Normal(out, self.obs_scale).to_event(1), obs=y)

    def guide(self, x, y=None, subsample_size=None):
        """The guide: features from the posterior path law (log-density = Girsanov log-ratio to the prior).

        :param int subsample_size: points per step (minibatches; ``None``: all of them).
        """
        pyro.module(self.name, self)
        x, _ = self._check(x, None)
        idx = pyro.plate(self.data_plate, x.shape[0], subsample_size=subsample_size, dim=-1).indices
        if not self.stochastic:
            return None
        return pyro.sample("features", self.path_law(x[idx], posterior=True))

    # ------------------------------------------------------------------ the protocol
    latent_on_inputs = True
    data_plate = "data"

    @property
    def own_guide(self):
        """:meth:`guide`: the features have no density at arbitrary values, only along the guide's own draws."""
        return self.guide

    @property
    def obs_dims(self):
        return ("observation",) if self.likelihood == "classification" else ("observation", "output")

    @property
    def predict_sites(self):
        """``obs`` ``(N,)`` labels and ``probs`` ``(N, classes)``, or ``obs`` and ``y_mean`` ``(N, outputs)``."""
        if self.likelihood == "classification":
            return {"obs": 1, "probs": 2}
        return {"obs": 2, "y_mean": 2}

    def predict_args(self, split):
        """The split's inputs, its targets left free."""
        return (split.x, None), {}

    def noise_scale(self, param_state=None, prediction=None):
        """The regression noise std (the fitted one when learned); ``None`` for classification."""
        if self.likelihood == "classification":
            return None
        return self.obs_scale.detach().clone()

    forward = model

    def __repr__(self):
        kind = "SDE-BNN" if self.stochastic else "ODE-net"
        return (f"SDEBNN({self.input_dim} -> {self.output_dim} {self.likelihood}, hidden_dim={self.hidden_dim}, "
                f"{kind} of {self.num_weights} path weights, sigma={self.sigma})")

    def __getstate__(self):
        # pyro.param tags our tensors with a weakref to their unconstrained value; it is rebuilt on the next call
        for p in self.parameters():
            p.__dict__.pop("unconstrained", None)
        return super().__getstate__()
