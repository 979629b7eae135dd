"""The NODE process model: dh/dt = R(h, x(t)), y = Z(h, x(t)) + noise, as a Pyro model."""
from collections import OrderedDict

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide.initialization import init_to_median
from torch.distributions import constraints

from ..distributions import DoseSchedule, NODETrajectory, ODESolver
from ..distributions.observation import ERROR_MODELS
from ..distributions.input_check import check_input_resolution
from .protocol import ProcessModel
from ..nn import ACTIVATIONS, BatchedMLP, resolve_prior_scale, sample_params
from ..utils.seeding import param_scope
from ..utils.tensors import broadcast_shapes
from ..validation import MAX_SIZE, check_choice, check_int, check_positive, check_trajectory_data, check_widths

__all__ = ["NODEModel", "init_to_glorot"]


def _left_of_trajectories(value, event_dim):
    """Put the batch dims of a global site left of the trajectory plate (dim -1).

    Vectorised particles and ``Predictive(parallel=True)`` with a guide give global sites batch shape
    ``(S, 1)``; ``Predictive`` with a dict of posterior samples gives ``(S,)`` for sites whose event has at least
    ``max_plate_nesting`` dims.  Both mean "S ensemble members shared by all trajectories".
    """
    batch = value.shape[: value.dim() - event_dim]
    if len(batch) == 1 and batch[0] != 1:
        return value.unsqueeze(-event_dim - 1)
    return value


def _check_scale(value, name):
    """A positive float, ``"learned"`` or ``"latent"``."""
    if isinstance(value, str):
        if value not in ("learned", "latent"):
            raise ValueError(f"{name} must be a positive float, 'learned' or 'latent', got {value!r}")
        return value
    return check_positive(value, f"{name} (the observation noise scale)")


def _rows(value, idx):
    """The rows ``idx`` (a subsampled plate) of a per-trajectory tensor, or ``None``."""
    return None if value is None else value[idx.to(value.device)]


class init_to_glorot:
    """Pyro ``init_loc_fn``: Glorot-style random values for network weights (zero biases), median otherwise.

    Starting every weight at its prior median (zero) leaves all hidden units identical, so fits started there
    never break the symmetry; this is the initialisation to use with ``AutoDelta`` / ``AutoNormal``.

    :param NODEModel model: the model whose networks define the weight shapes.
    :param int seed: seed of the random values (the same seed gives the same initial network).
    """

    def __init__(self, model, seed=0):
        self.model, self.seed = model, seed
        gen = torch.Generator(device="cpu").manual_seed(seed)  # the same values on every device
        self.values = {}
        for net in model.networks.values():
            self.values.update(net.init_params(gen, dtype=torch.float64))

    def __call__(self, site):
        value = self.values.get(site["name"])
        if value is not None:
            fn = site["fn"]
            like = fn.mean if hasattr(fn, "mean") else site["value"]
            return value.to(device=like.device, dtype=like.dtype).expand(fn.shape())
        return init_to_median(site)


class NODEModel(ProcessModel):
    """A Bayesian neural ODE for history-dependent processes, vectorised over weight particles.

    Every weight and bias is a sample site named by network and layer (``R.0.weight``, ``Z.0.bias``,
    ``H0.0.weight``) with prior ``Normal(0, prior_scale)``; the likelihood is one
    :class:`~pyro_node_uq.distributions.NODETrajectory` sample site ``"obs"`` inside a plate
    ``"trajectories"`` (``dim=-1``), so ``Trace_ELBO(vectorize_particles=True)`` and
    ``Predictive(parallel=True)`` integrate the whole ensemble in one ODE solve.

    :param int obs_dim: number of observed outputs.
    :param int input_dim: number of exogenous inputs x(t) (0 for autonomous systems).
    :param int hidden_dim: hidden state dimension (>= ``obs_dim``; default ``obs_dim``; larger is augmented).
    :param tuple R_hidden: hidden widths of the vector field network R.
    :param tuple Z_hidden: hidden widths of the observation network Z; ``()`` is a linear map, ``None``
        observes the first ``obs_dim`` hidden components directly (no Z weights).
    :param str activation: hidden activation of R and Z (``"tanh"`` keeps R bounded, so solves cannot blow up).
    :param init: initial hidden state: ``"zero"``, ``"learned"`` (latent site ``h0``), ``"input"`` (a linear
        network ``H0`` of x(t0)), or a fixed tensor of shape ``(hidden_dim,)``.
    :param str noise: ``"normal"`` or ``"studentt"`` observation noise.
    :param float df: Student-t degrees of freedom.
    :param str error_model: ``"additive"`` (``sd = scale``), ``"proportional"`` (``sd = scale |f|``),
        ``"combined"`` (``sd = sqrt(scale^2 + (prop_scale f)^2)``) or ``"lognormal"`` (``log y`` has noise of
        ``scale`` around ``log f``; positive outputs), see :class:`~pyro_node_uq.distributions.NODEObservation`.
    :param scale: noise scale: a positive float (fixed), ``"learned"`` (``pyro.param("sigma")``) or
        ``"latent"`` (sample site ``sigma`` with a ``HalfNormal(scale_prior)`` prior), per output.
    :param prop_scale: the proportional coefficient of ``error_model="combined"``, given like ``scale`` (site or
        parameter ``"sigma_prop"``).
    :param float scale_init: initial value of a learned scale.
    :param float scale_prior: scale of the ``HalfNormal`` prior of a latent noise scale.
    :param prior_scale: prior std of the weights: a float, or a dict of glob patterns (``{"Z.*": 0.5, "*": 1}``).
    :param solver: :class:`~pyro_node_uq.distributions.ODESolver` or dict of its options.
    :param str interpolation: ``"linear"`` or ``"cubic"`` interpolation of x(t) inside the solver.
    :param str on_divergence: the one divergence switch: ``"raise"`` a
        :class:`~pyro_node_uq.distributions.NODEDivergenceError`, or ``"reject"`` (score diverged members ``-inf``,
        what MCMC wants), see :func:`~pyro_node_uq.distributions.solve_node`.
    :param bool record: also record ``pyro.deterministic`` sites ``"hidden"`` and ``"y_mean"``.

    Example::

        >>> import pyro
        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> model = problem.default_model()
        >>> train = problem.train
        >>> trace = pyro.poutine.trace(model).get_trace(train.t, train.x, train.y)
        >>> trace.nodes["obs"]["fn"].batch_shape
        torch.Size([4])
    """

    def __init__(self, obs_dim, input_dim=0, hidden_dim=None, R_hidden=(32,), Z_hidden=(), activation="tanh",
                 init="zero", noise="normal", df=4.0, scale=0.1, scale_init=0.1, scale_prior=1.0,
                 prior_scale=1.0, solver=None, interpolation="linear", on_divergence="raise", record=True,
                 error_model="additive", prop_scale=None):
        obs_dim, input_dim = check_int(obs_dim, "obs_dim", 1, MAX_SIZE), check_int(input_dim, "input_dim", 0, MAX_SIZE)
        hidden_dim = obs_dim if hidden_dim is None else check_int(hidden_dim, "hidden_dim", 1, MAX_SIZE)
        R_hidden = check_widths(R_hidden, "R_hidden")
        Z_hidden = None if Z_hidden is None else check_widths(Z_hidden, "Z_hidden")
        check_choice(interpolation, "interpolation", ("linear", "cubic"))
        check_choice(on_divergence, "on_divergence", ("raise", "reject"))
        check_choice(activation, "activation", ACTIVATIONS)
        if hidden_dim < obs_dim:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be >= obs_dim ({obs_dim}): the hidden state "
                             "has at least as many components as the observations")
        check_choice(error_model, "error_model", ERROR_MODELS)
        if (error_model == "combined") != (prop_scale is not None):
            raise ValueError(f"prop_scale: give it with error_model='combined' only (got error_model="
                             f"{error_model!r}, prop_scale={prop_scale!r})")
        scale = _check_scale(scale, "scale")
        prop_scale = None if prop_scale is None else _check_scale(prop_scale, "prop_scale")
        for name, value in (("scale_init", scale_init), ("scale_prior", scale_prior), ("df", df)):
            check_positive(value, name)
        if noise not in ("normal", "studentt"):
            raise ValueError(f"noise must be 'normal' or 'studentt', got {noise!r}")
        if torch.is_tensor(init):
            if init.shape != (hidden_dim,):
                raise ValueError(f"init: a fixed initial state must have shape ({hidden_dim},), got {tuple(init.shape)}")
        elif init not in ("zero", "learned", "input"):
            raise ValueError(f"init must be 'zero', 'learned', 'input' or a tensor, got {init!r}")
        from_input = isinstance(init, str) and init == "input"
        if from_input and input_dim == 0:
            raise ValueError("init='input' needs input_dim > 0")
        self.obs_dim, self.input_dim, self.hidden_dim = obs_dim, input_dim, hidden_dim
        self.init, self.noise, self.df = init, noise, float(df)
        self.scale, self.scale_init, self.scale_prior = scale, float(scale_init), float(scale_prior)
        self.error_model, self.prop_scale = error_model, prop_scale
        self.prior_scale = prior_scale
        self.solver = ODESolver.coerce(solver)
        self.interpolation, self.on_divergence, self.record = interpolation, on_divergence, record
        self.R = BatchedMLP("R", (hidden_dim + input_dim, *R_hidden, hidden_dim), activation)
        self.Z = None if Z_hidden is None else BatchedMLP("Z", (hidden_dim + input_dim, *Z_hidden, obs_dim), activation)
        self.H0 = BatchedMLP("H0", (input_dim, hidden_dim)) if from_input else None
        for site in self.weight_shapes():
            resolve_prior_scale(site, prior_scale)  # fail early on a bad prior specification

    # ------------------------------------------------------------------ structure
    @property
    def networks(self):
        """Ordered dict ``name -> BatchedMLP`` of the model's networks."""
        nets = OrderedDict(R=self.R)
        if self.Z is not None:
            nets["Z"] = self.Z
        if self.H0 is not None:
            nets["H0"] = self.H0
        return nets

    def weight_shapes(self):
        """Ordered dict of every network weight/bias site and its event shape."""
        shapes = OrderedDict()
        for net in self.networks.values():
            shapes.update(net.param_shapes())
        return shapes

    def layer_sites(self, subset):
        """Sites of ``subset``: ``"last_layer"`` (last layer of Z, or of R without Z) or ``"first_layer"`` (R.0)."""
        if subset == "first_layer":
            net, layer = self.R, 0
        elif subset == "last_layer":
            net = self.Z if self.Z is not None else self.R
            layer = net.num_layers - 1
        else:
            raise ValueError(f"subset must be 'last_layer' or 'first_layer', got {subset!r}" + (
                " (random effects need a HierarchicalNODEModel)" if subset == "random_effects" else ""))
        return [f"{net.name}.{layer}.weight", f"{net.name}.{layer}.bias"]

    def init_loc_fn(self, seed=0):
        """An ``init_loc_fn`` for autoguides; see :class:`init_to_glorot`."""
        return init_to_glorot(self, seed)

    # ------------------------------------------------------------------ the protocol
    @property
    def predict_sites(self):
        """``obs`` and the recorded ``y_mean`` / ``hidden`` keep ``(N, T, dim)`` per draw; a latent ``sigma`` (and
        ``sigma_prop``) keeps its ``(obs_dim,)``."""
        sites = {"obs": 3}
        if self.record:
            sites.update(y_mean=3, hidden=3)
        if self.scale == "latent":
            sites["sigma"] = 1
        if self.prop_scale == "latent":
            sites["sigma_prop"] = 1
        return sites

    def predict_args(self, split):
        """The split's inputs with the observations left free; its doses, per-trajectory time mask and ``t0``
        (everything in ``split.kwargs`` but the observation ``mask`` and ``censored`` flags) stay, so predictions
        see the same dosing and times as the fit."""
        keep = {k: v for k, v in split.kwargs.items() if k not in ("mask", "censored")}
        return (split.t, split.x, None), {"num_trajectories": len(split), **keep}

    @property
    def observes_hidden(self):
        """Without an observation network Z the outputs are the first ``obs_dim`` hidden components."""
        return self.Z is None

    def noise_scale(self, param_state=None, prediction=None):
        """The observation noise std: a fixed scale as is; a ``"learned"`` scale read from ``param_state`` in its
        constrained (positive) space; a ``"latent"`` scale per draw of ``prediction`` ``(S, obs_dim)``, shaped
        ``(S, 1, 1, obs_dim)`` so that each predictive draw is scored with its own noise.  With a proportional or
        combined ``error_model`` the std of each entry around ``prediction["y_mean"]``; ``None`` for the
        log-normal model (its noise is not a Normal around the mean) or when a scale is not known."""
        a = self._scale_value(self.scale, "sigma", param_state, prediction)
        if self.error_model == "additive" or a is None:
            return a
        f = None if prediction is None else prediction.get("y_mean")
        if self.error_model == "lognormal" or f is None:
            return None
        if self.error_model == "proportional":
            return (a * f.abs()).clamp(min=torch.finfo(f.dtype).eps)
        b = self._scale_value(self.prop_scale, "sigma_prop", param_state, prediction)
        return None if b is None else torch.sqrt(a * a + (b * f) ** 2).clamp(min=torch.finfo(f.dtype).eps)

    @staticmethod
    def _scale_value(spec, name, param_state, prediction):
        """A scale given as ``spec`` (float, ``"learned"``, ``"latent"``) as a value, or ``None`` if not known."""
        if not isinstance(spec, str):
            return float(spec)
        if spec == "learned" and param_state is not None and name in param_state["params"]:
            with param_scope(param_state), torch.no_grad():
                return pyro.param(name).detach().clone()
        if spec == "latent" and prediction is not None and name in prediction:
            sigma = prediction[name]
            return sigma.reshape(sigma.shape[:1] + (1, 1) + sigma.shape[-1:])
        return None

    # ------------------------------------------------------------------ the model
    def _noise_scale(self, like, spec=None, name="sigma"):
        spec = self.scale if spec is None else spec
        if spec == "learned":
            init = like.new_full((self.obs_dim,), self.scale_init)
            return pyro.param(name, init, constraint=constraints.positive)
        if spec == "latent":
            prior = dist.HalfNormal(like.new_full((self.obs_dim,), self.scale_prior))
            # a batched draw (P, 1, obs_dim) becomes (P, 1, 1, obs_dim): broadcast over trajectories and time
            return _left_of_trajectories(pyro.sample(name, prior.to_event(1)), 1).unsqueeze(-2)
        return like.new_tensor(float(spec))

    def _initial_state(self, params, x, like):
        if torch.is_tensor(self.init):
            return self.init.to(device=like.device, dtype=like.dtype)
        if self.init == "zero":
            return like.new_zeros(self.hidden_dim)
        if self.init == "learned":
            loc = like.new_zeros(self.hidden_dim)
            h0 = pyro.sample("h0", dist.Normal(loc, resolve_prior_scale("h0", self.prior_scale)).to_event(1))
            return _left_of_trajectories(h0, 1)
        return self.H0(params, x[..., 0, :])  # a function of the inputs at the first sample time

    def __call__(self, t, x=None, y=None, mask=None, x_times=None, num_trajectories=None, *, doses=None,
                 t_mask=None, censored=None, t0=None):
        """Run the model on trajectories (units) sharing the time grid ``t``, or each with its own times.

        :param torch.Tensor t: strictly increasing observation times ``(T,)``, or ``(N, T)`` per trajectory
            (padded; ``t_mask`` marks the real ones; then ``x`` needs ``x_times``).
        :param torch.Tensor x: inputs ``(N, T, input_dim)`` (or ``(N, Tx, input_dim)`` at ``x_times``).
        :param torch.Tensor y: observations ``(N, T, obs_dim)``, or ``None`` to sample them.
        :param torch.Tensor mask: boolean ``(N, T)`` or ``(N, T, obs_dim)``: which entries of ``y`` are observed.
        :param torch.Tensor x_times: sample times of ``x`` when they differ from ``t``.
        :param int num_trajectories: ``N`` when neither ``x``, ``y`` nor ``mask`` gives it.
        :param DoseSchedule doses: bolus and infusion events per trajectory (the solve restarts at each).
        :param torch.Tensor t_mask: boolean ``(N, T)``: real entries of per-trajectory times ``t``.
        :param torch.Tensor censored: boolean ``(N, T)`` or ``(N, T, obs_dim)``: observations below a
            quantification limit; ``y`` holds the limit there.
        :param float t0: start of the solve, where the initial state holds (default: the first time or dose).
        :returns: the observations (sampled when ``y`` is ``None``).
        """
        y, mask = self._checked_data(t, x, y, mask, x_times)
        if censored is not None and censored.dim() == 2:
            censored = censored[..., None].expand(censored.shape + (self.obs_dim,))
        if x is not None and self.input_dim > 0:
            self._check_inputs(t, x, x_times)
        per_unit = (x, y, mask, t if t.dim() == 2 else None,
                    doses.time if doses is not None and doses.num_units > 1 else None)  # one unit: shared doses
        N = next((v.shape[0] for v in per_unit if v is not None), num_trajectories)
        if N is None:
            raise ValueError("num_trajectories: give x, y, mask or num_trajectories to set the number of trajectories")
        shapes = self.weight_shapes()  # every tensor created here follows the data's dtype and device
        params = sample_params(shapes, self.prior_scale, dtype=t.dtype, device=t.device)
        params = {k: _left_of_trajectories(v, len(shapes[k])) for k, v in params.items()}
        plate = pyro.plate("trajectories", N, dim=-1)
        idx = plate.indices  # arange(N) unless a handler subsamples the plate (minibatches, data-parallel shards)
        if idx.shape[0] != N or not bool((idx == torch.arange(N, device=idx.device)).all()):
            x, y, mask, censored, t_mask = (_rows(v, idx) for v in (x, y, mask, censored, t_mask))
            t = _rows(t, idx) if t.dim() == 2 else t
            doses = None if doses is None or doses.num_units == 1 else DoseSchedule(*(_rows(v, idx) for v in doses))
        h0 = self._initial_state(params, x, t)
        scale = self._noise_scale(t)
        prop = None if self.prop_scale is None else self._noise_scale(t, self.prop_scale, "sigma_prop")
        with plate:
            fn = NODETrajectory(self.R, self.Z, params, t, x, h0=h0, scale=scale, noise=self.noise, df=self.df,
                                mask=mask, x_times=x_times, interpolation=self.interpolation, solver=self.solver,
                                on_divergence=self.on_divergence, obs_dim=self.obs_dim,
                                error_model=self.error_model, prop_scale=prop, censored=censored, t_mask=t_mask,
                                doses=doses, t0=t0)
            M = idx.shape[0]  # the trajectories in this call (fewer than N when the plate is subsampled)
            if fn.batch_shape[-1:] != (M,):  # nothing per trajectory (no inputs, shared h0): one solve for all
                fn.hidden  # noqa: B018 - solve before expanding, so the M trajectories share it
                fn = fn.expand(broadcast_shapes(fn.batch_shape, (M,)))
            if self.record:
                pyro.deterministic("hidden", fn.hidden, event_dim=2)
                pyro.deterministic("y_mean", fn.mean, event_dim=2)
            return pyro.sample("obs", fn, obs=y)

    def _checked_data(self, t, x, y, mask, x_times):
        """:func:`~pyro_node_uq.validation.check_trajectory_data` once per data: MCMC and SVI call the model on the
        same tensors thousands of times, and the check (several reductions over the data) cost ~1.3 ms of a NUTS
        potential.  The last data are held (so their ids cannot be reused) with their versions (so an in-place
        change is checked again)."""
        data = (t, x, y, mask, x_times)
        key = tuple((id(v), v._version) if torch.is_tensor(v) else v for v in data)
        last = self.__dict__.get("_validated")
        if last is None or last[0] != key or torch.jit.is_tracing():
            last = (key, data, check_trajectory_data(t, x, y, mask, self.input_dim, self.obs_dim, x_times))
            self._validated = last
        return last[2]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_validated", None)  # a cache of the last data, not part of the model
        return state

    def _check_inputs(self, t, x, x_times):
        """Warn (once per input tensor) when the input changes faster than the solver steps (see
        :func:`~pyro_node_uq.distributions.input_check.check_input_resolution`)."""
        key = (id(x), id(x_times), id(t), self.solver.method, self.solver.step_size)
        if getattr(self, "_checked_inputs", None) != key:
            grid = t if x_times is None or t.dim() == 1 else x_times  # per-unit times: judge on x's own grid
            check_input_resolution(t if x_times is None else x_times, x, self.solver, grid)
            self._checked_inputs = key

    def __repr__(self):
        nets = ", ".join(repr(n) for n in self.networks.values())
        return f"NODEModel(obs_dim={self.obs_dim}, input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, {nets})"
