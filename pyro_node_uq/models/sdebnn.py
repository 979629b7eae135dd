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
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from tqdm.auto import tqdm

from ..distributions import SDESolver, WeightPathFeatures, solve_weight_path
from ..nn import BatchedMLP, flatten_params
from ..validation import MAX_SIZE, check_choice, check_int, check_positive, check_widths

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


class SDEBNN(torch.nn.Module):
    """SDE-BNN for regression or classification as a Pyro model (:meth:`model`) plus guide (:meth:`guide`).

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

        >>> import pyro
        >>> from pyro.infer import Predictive
        >>> x = torch.linspace(-1, 1, 20)[:, None]
        >>> y = torch.sin(3 * x) + 0.1 * torch.randn(20, 1)
        >>> net = SDEBNN(1, 1, width=(8,), solver={"dt": 0.25})
        >>> result = net.fit(x, y, num_epochs=2, progress_bar=False)
        >>> net.predict(x, num_samples=4)["obs"].shape
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
    def model(self, x, y=None, num_data=None):
        """The Pyro model: features from the OU prior path law, then the likelihood in plate ``"data"`` (dim -1).

        :param torch.Tensor x: inputs ``(N, input_dim)``.
        :param torch.Tensor y: targets ``(N, output_dim)`` (regression) or labels ``(N,)``; ``None`` samples.
        :param int num_data: size of the full data set when ``x`` is a minibatch (scales the likelihood).
        """
        pyro.module(self.name, self)
        x, y = self._check(x, y)
        N = x.shape[0]
        if self.stochastic:
            h1 = pyro.sample("features", self.path_law(x, posterior=False))
            if h1.dim() > 2:  # batch (paths, 1): the trailing 1 is the data plate's dim
                h1 = h1.squeeze(-3)
        else:
            h1 = solve_weight_path(self.w0, self.sigma, 1, self.net, self.shapes, self.initial_state(x), self.drift,
                                   self.solver, stochastic=False)[0][0]
            pyro.deterministic("features", h1, event_dim=2)
        out = self.head(h1)
        with pyro.plate("data", num_data or N, subsample=torch.arange(N, device=x.device), dim=-1):
            if self.likelihood == "classification":
                pyro.deterministic("probs", out.softmax(-1), event_dim=1)
                return pyro.sample("obs", dist.Categorical(logits=out), obs=y)
            pyro.deterministic("y_mean", out, event_dim=1)
            return pyro.sample("obs", dist.Normal(out, self.obs_scale).to_event(1), obs=y)

    def guide(self, x, y=None, num_data=None):
        """The guide: features from the posterior path law (log-density = Girsanov log-ratio to the prior)."""
        pyro.module(self.name, self)
        if not self.stochastic:
            return None
        x, _ = self._check(x, None)
        return pyro.sample("features", self.path_law(x, posterior=True))

    forward = model

    def __getstate__(self):
        # pyro.param tags our tensors with a weakref to their unconstrained value; it is rebuilt on the next call
        for p in self.parameters():
            p.__dict__.pop("unconstrained", None)
        return super().__getstate__()

    # ------------------------------------------------------------------ fit / predict helpers
    def fit(self, x, y, num_epochs=10, batch_size=None, lr=1e-2, lr_final=None, num_particles=1, clip_norm=10.0,
            progress_bar=True, seed=None):
        """Train with ``SVI`` + ``Trace_ELBO`` (vectorised particles) and ``ClippedAdam`` on minibatches.

        :param int num_epochs: passes over the data.
        :param int batch_size: minibatch size (default: all of it).
        :param float lr: initial learning rate, decaying geometrically to ``lr_final`` (default ``lr / 10``).
        :param int num_particles: weight paths per step, integrated in one solve.
        :param bool progress_bar: show a tqdm bar.
        :param int seed: ``pyro.set_rng_seed`` before training.
        :returns: dict with ``"losses"`` (per step, per data point) and ``"wall_time"`` (seconds).
        """
        if seed is not None:
            pyro.set_rng_seed(seed)
        x, y = self._check(x, y)
        N = x.shape[0]
        num_epochs, lr = check_int(num_epochs, "num_epochs", 1), check_positive(lr, "lr")
        check_int(num_particles, "num_particles", 1)
        batch_size = N if batch_size is None else min(check_int(batch_size, "batch_size", 1), N)
        steps = num_epochs * math.ceil(N / batch_size)
        lr_final = lr / 10 if lr_final is None else lr_final
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": (lr_final / lr) ** (1.0 / max(steps, 1)),
                                        "clip_norm": clip_norm})
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
        svi = SVI(self.model, self.guide, optim, elbo)
        losses, start = [], time.perf_counter()
        with tqdm(total=steps, desc="SDE-BNN" if self.stochastic else "ODE-net", disable=not progress_bar,
                  leave=False) as bar:
            for _ in range(num_epochs):
                for idx in torch.randperm(N).split(batch_size):
                    loss = svi.step(x[idx], y[idx], num_data=N) / N
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"SDE-BNN fit: the loss became {loss} at step {len(losses)}; "
                                                 f"lower lr or the solver's dt")
                    losses.append(loss)
                    bar.update()
                    bar.set_postfix(loss=f"{loss:.4g}")
        return {"losses": losses, "wall_time": time.perf_counter() - start}

    @torch.no_grad()
    def predict(self, x, num_samples=100, batch_size=None, as_inference_data=False):
        """Posterior predictive samples, shape ``(num_samples, N, ...)`` (ArviZ's draw x observation layout).

        :returns: dict with ``"obs"`` and ``"probs"`` (classification) or ``"y_mean"`` (regression); with
            ``as_inference_data=True`` an ``arviz.InferenceData`` whose ``posterior_predictive`` holds them
            with one chain.
        """
        x, _ = self._check(x, None)
        num_samples = check_int(num_samples, "num_samples", 1)
        batch_size = x.shape[0] if batch_size is None else check_int(batch_size, "batch_size", 1)
        keep = ("obs", "probs") if self.likelihood == "classification" else ("obs", "y_mean")
        predictive = Predictive(self.model, guide=self.guide, num_samples=num_samples, parallel=True,
                                return_sites=keep)
        parts = [predictive(xb, num_data=x.shape[0]) for xb in x.split(batch_size)]
        out = {k: torch.cat([p[k].reshape((num_samples, -1) + p[k].shape[p[k].dim() - self._event_dims(k):])
                             for p in parts], dim=1) for k in keep}
        if not as_inference_data:
            return out
        import arviz as az
        return az.from_dict(posterior_predictive={k: v.cpu().numpy()[None] for k, v in out.items()})

    def _event_dims(self, site):
        if self.likelihood == "classification":
            return 1 if site == "probs" else 0
        return 1
