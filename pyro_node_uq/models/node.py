"""The NODE process model: dh/dt = R(h, x(t)), y = Z(h, x(t)) + noise, as a Pyro model."""
import copy
from collections import OrderedDict

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide.initialization import init_to_median
from torch.distributions import constraints

from ..distributions import (
    DoseSchedule,
    ErrorModel,
    NODEObservation,
    ODESolver,
    solve_node,
)
from ..distributions.input_check import check_input_resolution
from ..nn import ACTIVATIONS, BatchedMLP, resolve_prior_scale, sample_params
from ..utils.seeding import param_scope
from ..utils.tensors import broadcast_shapes
from ..validation import (
    MAX_SIZE,
    OnDivergence,
    check_choice,
    check_int,
    check_positive,
    check_tensor,
    check_trajectory_data,
    check_widths,
)
from .protocol import ProcessModel
from .unit_data import UnitData

__all__ = ["NODEModel", "UnitData", "init_to_glorot"]


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


def _check_indices(idx, N):
    """The plate's indices must pick units among the ``N`` of the data (a value of the plate's site
    ``"trajectories"`` taken from a trace of other data may not)."""
    if idx.dim() != 1 or idx.is_floating_point() or idx.shape[0] > N or (idx.numel() and (
            int(idx.min()) < 0 or int(idx.max()) >= N)):
        raise ValueError(f"trajectories: the plate's indices {idx.tolist()} are not a subsample of the data's {N} "
                         "trajectories; a value of the site 'trajectories' conditioned or replayed from a trace of "
                         "other data? Subsample with pyro.plate's subsample_size/subsample, and leave the plate's "
                         "site out of conditioned values")


#: each noise scale's site name -> the model attributes holding its spec and the scale of its latent prior
_NOISE_ATTRS = {"sigma": ("scale", "scale_prior"), "sigma_prop": ("prop_scale", "prop_scale_prior")}


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
    ``H0.0.weight``) with prior ``Normal(0, prior_scale)``; the likelihood is one sample site ``"obs"``, a
    :class:`~pyro_node_uq.distributions.NODEObservation` over the solve's mean (the composition
    :class:`~pyro_node_uq.distributions.NODETrajectory` packages), inside a plate ``"trajectories"``
    (``dim=-1``), so ``Trace_ELBO(vectorize_particles=True)`` and ``Predictive(parallel=True)`` integrate the
    whole ensemble in one ODE solve.

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
    :param float prop_scale_init: initial value of a learned proportional coefficient (relative, no units).
    :param float prop_scale_prior: scale of the ``HalfNormal`` prior of a latent proportional coefficient: a
        coefficient of variation, so a prior in the outputs' units (``scale_prior``) would be meaningless.
    :param prior_scale: prior std of the weights: a float, or a dict of glob patterns (``{"Z.*": 0.5, "*": 1}``).
    :param solver: :class:`~pyro_node_uq.distributions.ODESolver` or dict of its options.
    :param str interpolation: ``"linear"`` or ``"cubic"`` interpolation of x(t) inside the solver.
    :param str on_divergence: the one divergence switch: ``"raise"`` a
        :class:`~pyro_node_uq.distributions.NODEDivergenceError`, or ``"reject"`` (score diverged members ``-inf``,
        what MCMC wants), see :func:`~pyro_node_uq.distributions.solve_node`.
    :param bool record: also record ``pyro.deterministic`` sites ``"hidden"`` and ``"y_mean"``.

    **The model body and its component hooks.**  :meth:`__call__` is the package's one NODE model body: it checks
    the data, samples the network weights, opens the plate ``"trajectories"``, restricts every per-unit tensor
    (``x``, ``y``, masks, per-unit times, doses, covariates) to the plate's indices (Pyro's ``subsample_size`` /
    ``subsample``, :class:`~pyro_node_uq.infer.distributed.DataParallelSVI` shards; the plate scales the
    log-likelihood by ``N / M``), solves with :func:`~pyro_node_uq.distributions.solve_node` and scores with
    :class:`~pyro_node_uq.distributions.NODEObservation`.  A model with per-unit structure (random effects,
    mechanistic parameters) is a subclass that overrides these hooks, called in this order on every evaluation,
    and never a second ``__call__``:

    1. :meth:`population_sites` ``(like) -> dict``: outside the plate, after the weights: sample the
       component's population-level sites (``omega``, ``beta``, typical values...) and return what the unit hooks
       need.  Batched draws (vectorised particles, ``Predictive``) must sit left of the plate dim (see
       ``_left_of_trajectories``).
    2. :meth:`unit_sites` ``(population, units) -> effects``: inside the plate (``dim=-1``): sample the per-unit
       latent sites of exactly the units in ``units`` (a :class:`UnitData`, ``M`` rows) and return their values,
       ``batch + (M, k)``, or ``None``.
    3. :meth:`unit_field` ``(params, effects, population, units) -> (R, params, x, x_times)``: the vector field
       the solve integrates for these units and its weights (per-unit weights carry the ``M`` dim left of their
       event), and the inputs it reads.  ``R`` is :attr:`R` or an object with its interface (``R(params, hx)``,
       ``sizes``, ``param_shapes()``), e.g. a known mechanism plus the network.  :meth:`unit_solve` ``(R, params,
       t, x, h0, **options) -> NODESolution`` then solves it (a closed form may replace the solve).
    4. :meth:`unit_mean` ``(mean, effects, population, units) -> mean``: the per-unit transform of the solved
       observation mean ``batch + (M, T, obs_dim)`` (e.g. a volume effect) before the error model.

    Per-unit data the hooks need arrive through ``units``: a hook never indexes data by itself, so subsampling
    holds for every component.  Class attributes a component sets: ``covariate_dim`` (covariates it reads; a
    model without unit effects accepts a split's covariates unused, one with effects but ``covariate_dim=0``
    refuses them), ``dose_scale`` (doses enter the state multiplied by it) and :attr:`has_unit_effects`.

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
                 error_model="additive", prop_scale=None, prop_scale_init=0.1, prop_scale_prior=0.3):
        obs_dim, input_dim = check_int(obs_dim, "obs_dim", 1, MAX_SIZE), check_int(input_dim, "input_dim", 0, MAX_SIZE)
        hidden_dim = obs_dim if hidden_dim is None else check_int(hidden_dim, "hidden_dim", 1, MAX_SIZE)
        R_hidden = check_widths(R_hidden, "R_hidden")
        Z_hidden = None if Z_hidden is None else check_widths(Z_hidden, "Z_hidden")
        check_choice(interpolation, "interpolation", ("linear", "cubic"))
        check_choice(activation, "activation", ACTIVATIONS)
        if hidden_dim < obs_dim:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be >= obs_dim ({obs_dim}): the hidden state "
                             "has at least as many components as the observations")
        law = ErrorModel.coerce(error_model, noise, df)
        if (law.kind == "combined") != (prop_scale is not None):
            raise ValueError(f"prop_scale: give it with error_model='combined' only (got error_model="
                             f"{error_model!r}, prop_scale={prop_scale!r})")
        scale = _check_scale(scale, "scale")
        prop_scale = None if prop_scale is None else _check_scale(prop_scale, "prop_scale")
        for name, value in (("scale_init", scale_init), ("scale_prior", scale_prior),
                            ("prop_scale_init", prop_scale_init), ("prop_scale_prior", prop_scale_prior)):
            check_positive(value, name)
        if torch.is_tensor(init):
            if init.shape != (hidden_dim,):
                raise ValueError(f"init: a fixed initial state must have shape ({hidden_dim},), got {tuple(init.shape)}")
        elif init not in ("zero", "learned", "input"):
            raise ValueError(f"init must be 'zero', 'learned', 'input' or a tensor, got {init!r}")
        from_input = isinstance(init, str) and init == "input"
        if from_input and input_dim == 0:
            raise ValueError("init='input' needs input_dim > 0")
        self.obs_dim, self.input_dim, self.hidden_dim = obs_dim, input_dim, hidden_dim
        self.init, self.law = init, law
        self.scale, self.scale_init, self.scale_prior = scale, float(scale_init), float(scale_prior)
        self.prop_scale, self.prior_scale = prop_scale, prior_scale
        self.prop_scale_init, self.prop_scale_prior = float(prop_scale_init), float(prop_scale_prior)
        self.solver = ODESolver.coerce(solver)
        self.interpolation, self.on_divergence, self.record = interpolation, OnDivergence(on_divergence), record
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

    #: the ``pyro.param`` s the model also accepts batched, ``(num_fits, 1) + shape``: one per fit of MAP fits run
    #: as one model (:mod:`~pyro_node_uq.methods.batched_map`)
    batchable_params = ("sigma", "sigma_prop")

    @property
    def learned_scales(self):
        """The names of the noise scales given as ``"learned"`` (``pyro.param`` s): ``"sigma"``, ``"sigma_prop"``."""
        return tuple(name for name, (spec, _) in _NOISE_ATTRS.items() if getattr(self, spec) == "learned")

    def with_latent_noise(self, prior_scales):
        """A shallow copy in which the named learned noise scales are latent sites, each with a ``HalfNormal`` prior
        of the given scale, so that a posterior (or each component of a mixture guide) carries its own value.

        :param dict prior_scales: site name (``"sigma"``, ``"sigma_prop"``) -> the scale of its ``HalfNormal``
            prior; every name must be one of :attr:`learned_scales`.
        :returns: the copy.

        Example::

            >>> model = NODEModel(obs_dim=1, scale="learned")
            >>> latent = model.with_latent_noise({"sigma": 0.5})
            >>> latent.scale, latent.scale_prior, model.scale
            ('latent', 0.5, 'learned')
        """
        out = copy.copy(self)
        for name, prior in prior_scales.items():
            if name not in self.learned_scales:
                raise ValueError(f"with_latent_noise: {name!r} is not a learned noise scale of this model (learned: "
                                 f"{list(self.learned_scales)})")
            spec, prior_attr = _NOISE_ATTRS[name]
            setattr(out, spec, "latent")
            check_positive(prior, f"prior_scales[{name!r}]")
            setattr(out, prior_attr, float(prior))
        return out

    error_model = property(lambda self: self.law.kind, doc="The error model's name (see :attr:`law`).")
    noise = property(lambda self: self.law.noise, doc="``\"normal\"`` or ``\"studentt\"`` noise.")
    df = property(lambda self: self.law.df, doc="The Student-t degrees of freedom.")

    def noise_scale(self, param_state=None, prediction=None):
        """The observation noise std: a fixed scale as is; a ``"learned"`` scale read from ``param_state`` in its
        constrained (positive) space, or per draw from ``prediction`` where it holds one (a deep ensemble's
        members' own, :attr:`~pyro_node_uq.methods.MethodResult.draw_params`); a ``"latent"`` scale per draw of
        ``prediction`` ``(S, obs_dim)``, shaped ``(S, 1, 1, obs_dim)`` so that each predictive draw is scored with
        its own noise.  With a proportional or combined ``error_model`` the std of each entry around
        ``prediction["y_mean"]`` (the rule of :meth:`~pyro_node_uq.distributions.ErrorModel.sd`); ``None`` for the
        log-normal model (its noise is not a Normal around the mean) or when a scale is not known."""
        law = self.law
        a = self._scale_value(self.scale, "sigma", param_state, prediction)
        b = None if self.prop_scale is None else self._scale_value(self.prop_scale, "sigma_prop", param_state,
                                                                    prediction)
        f = None if prediction is None else prediction.get("y_mean")
        if a is None or not law.normal_around_mean or (law.kind != "additive" and f is None) or (
                law.kind == "combined" and b is None):
            return None
        return law.sd(f, a, b)

    @staticmethod
    def _scale_value(spec, name, param_state, prediction):
        """A scale given as ``spec`` (float, ``"learned"``, ``"latent"``) as a value, or ``None`` if not known."""
        if not isinstance(spec, str):
            return float(spec)
        if spec == "learned" and prediction is not None and name in prediction:  # per draw (a deep ensemble's)
            sigma = prediction[name]
            return sigma.reshape(sigma.shape[:1] + (1, 1) + sigma.shape[-1:])
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
        # the proportional coefficient is relative (no units): its own initial value and prior
        init, prior_scale = ((self.prop_scale_init, self.prop_scale_prior) if name == "sigma_prop"
                             else (self.scale_init, self.scale_prior))
        if spec == "learned":
            init = like.new_full((self.obs_dim,), init)
            sigma = pyro.param(name, init, constraint=constraints.positive)
            # a batch of fits' own scales (num_fits, 1, obs_dim) broadcasts as a latent scale's draws do
            return sigma if sigma.dim() == 1 else _left_of_trajectories(sigma, 1).unsqueeze(-2)
        if spec == "latent":
            prior = dist.HalfNormal(like.new_full((self.obs_dim,), prior_scale))
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

    # ------------------------------------------------------------------ the component hooks
    covariate_dim = 0
    dose_scale = 1.0

    @property
    def has_unit_effects(self):
        """Whether the model has per-unit parameters (then covariates it does not model are refused)."""
        return False

    def population_sites(self, like):
        """Hook 1 (see the class docstring): the component's population-level sites, sampled outside the plate;
        returns what the unit hooks need (default: nothing).

        :param torch.Tensor like: a tensor of the data's dtype and device.
        :rtype: dict
        """
        return {}

    def unit_sites(self, population, units):
        """Hook 2: inside the plate, the per-unit latent sites of ``units`` and their values (default: none).

        :param dict population: :meth:`population_sites`' result.
        :param UnitData units: the units of this call (the plate's subsample).
        :returns: per-unit effects ``batch + (M, k)`` or ``None``.
        """

    def unit_field(self, params, effects, population, units):
        """Hook 3: the vector field the solve integrates for ``units``, its weights and the inputs it reads
        (default: :attr:`R` with the population weights, the units' own inputs).

        :param dict params: the network weights (population values, batch dims left of the plate dim).
        :param effects: :meth:`unit_sites`' result.
        :param dict population: :meth:`population_sites`' result.
        :param UnitData units: the units of this call.
        :returns: ``(R, params, x, x_times)``.
        """
        return self.R, params, units.x, units.x_times

    def unit_solve(self, R, params, t, x, h0, **options):
        """Hook 3b: the units' states and observation mean, a :class:`~pyro_node_uq.distributions.NODESolution`
        (default: :func:`~pyro_node_uq.distributions.solve_node` of ``unit_field``'s ``R`` with :attr:`Z`; a
        component with a closed-form solution or its own observation of the states overrides it).

        :param R: the field of :meth:`unit_field`; ``params``, ``x`` its weights and inputs.
        :param torch.Tensor t: the units' observation times; ``h0`` the initial state.
        :param options: :func:`~pyro_node_uq.distributions.solve_node`'s keyword arguments (doses, masks, solver).
        """
        return solve_node(R, self.Z, params, t, x, h0, **options)

    def unit_mean(self, mean, effects, population, units):
        """Hook 4: the observation mean ``batch + (M, T, obs_dim)`` of ``units`` after the per-unit transforms
        (default: the solved mean).

        :param torch.Tensor mean: the solve's observation mean.
        :param effects: :meth:`unit_sites`' result.
        :param dict population: :meth:`population_sites`' result.
        :param UnitData units: the units of this call.
        """
        return mean

    # ------------------------------------------------------------------ the model body
    def __call__(self, t, x=None, y=None, mask=None, x_times=None, num_trajectories=None, *, doses=None,
                 t_mask=None, censored=None, t0=None, covariates=None, new_units=False):
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
        :param torch.Tensor covariates: ``(N, C)`` per-unit covariates, for a model with a covariate model
            (``covariate_dim=C``); a model without per-unit effects accepts and does not use them.
        :param bool new_units: the units were not fitted: a model with per-unit effects draws theirs from the
            population.
        :returns: the observations (sampled when ``y`` is ``None``).
        """
        y, mask, covariates, censored, N = self._call_data(t, x, y, mask, x_times, covariates, censored, doses,
                                                           num_trajectories, t_mask)
        shapes = self.weight_shapes()  # every tensor created here follows the data's dtype and device
        params = sample_params(shapes, self.prior_scale, dtype=t.dtype, device=t.device)
        params = {k: _left_of_trajectories(v, len(shapes[k])) for k, v in params.items()}
        plate = pyro.plate(self.data_plate, N, dim=-1)
        population = self.population_sites(t)
        idx = plate.indices  # arange(N) unless a handler subsamples the plate (minibatches, data-parallel shards)
        if idx.shape[0] != N or not bool((idx == torch.arange(N, device=idx.device)).all()):
            _check_indices(idx, N)
            x, y, mask, censored, t_mask, covariates = (_rows(v, idx) for v in (x, y, mask, censored, t_mask,
                                                                                 covariates))
            t = _rows(t, idx) if t.dim() == 2 else t
            doses = None if doses is None or doses.num_units == 1 else DoseSchedule(*(_rows(v, idx) for v in doses))
        h0 = self._initial_state(params, x, t)
        scale = self._noise_scale(t)
        prop = None if self.prop_scale is None else self._noise_scale(t, self.prop_scale, "sigma_prop")
        doses = self._scaled_doses(doses)
        units = UnitData(idx, t, x, x_times, covariates, bool(new_units))
        with plate:
            effects = self.unit_sites(population, units)
            R, params, x, x_times = self.unit_field(params, effects, population, units)
            sol = self.unit_solve(R, params, t, x, h0, t_mask=t_mask, x_times=x_times, doses=doses, t0=t0,
                                  obs_dim=self.obs_dim, interpolation=self.interpolation, solver=self.solver,
                                  on_divergence=self.on_divergence)
            mean = self.unit_mean(sol.mean, effects, population, units)
            # nothing per unit (no inputs, shared h0): one solve, expanded to the M units of this call
            batch = broadcast_shapes(mean.shape[:-2], (idx.shape[0],))
            mean, hidden = mean.expand(batch + mean.shape[-2:]), sol.hidden.expand(batch + sol.hidden.shape[-2:])
            if self.record:
                pyro.deterministic("hidden", hidden, event_dim=2)
                pyro.deterministic("y_mean", mean, event_dim=2)
            fn = NODEObservation(mean, scale, self.law, prop_scale=prop, mask=mask, censored=censored,
                                 diverged=sol.diverged)
            return pyro.sample("obs", fn, obs=y)

    def _call_data(self, t, x, y, mask, x_times, covariates, censored, doses, num_trajectories, t_mask=None):
        """The checked data of one call: ``(y, mask, covariates, censored, N)``, ``censored`` per output and
        ``mask`` false at the padded times ``t_mask`` marks (never observed)."""
        y, mask, covariates = self._checked_data(t, x, y, mask, x_times, covariates)
        if t_mask is not None:
            mask = t_mask[..., None] if mask is None else mask & t_mask[..., None]
        if censored is not None and censored.dim() == 2:
            censored = censored[..., None].expand(censored.shape + (self.obs_dim,))
        if x is not None and self.input_dim > 0:
            self._check_inputs(t, x, x_times)
        N = self._num_units(x, y, mask, t, doses, covariates, num_trajectories)
        if covariates is not None and covariates.shape[0] != N:
            raise ValueError(f"covariates: {covariates.shape[0]} rows but the data have {N} trajectories (units)")
        return y, mask, covariates, censored, N

    def _scaled_doses(self, doses):
        """``doses`` entering the state multiplied by :attr:`dose_scale` (infusion codes kept)."""
        if doses is None or self.dose_scale == 1.0:
            return doses
        rate = torch.where(doses.rate < 0, doses.rate, doses.rate * self.dose_scale)  # keeps -1 / -2 codes
        return doses._replace(amount=doses.amount * self.dose_scale, rate=rate)

    def log_joint_fn(self, *args, **kwargs):
        """The log joint density of this model on the data ``(*args, **kwargs)`` (its call's arguments) as a
        function of the latent sites' values, evaluated without Pyro's effect handlers, or ``None`` where this
        model's configuration is not covered (see :func:`~pyro_node_uq.models.node_log_joint.node_log_joint`).
        HMC and NUTS of :class:`~pyro_node_uq.infer.LogJointNUTS` take it as their potential energy."""
        from .node_log_joint import node_log_joint

        return node_log_joint(self, *args, **kwargs)

    @staticmethod
    def _num_units(x, y, mask, t, doses, covariates, num_trajectories):
        """``N``: from the per-unit data, else ``num_trajectories``, else a one-unit dose schedule (shared by
        every unit when ``N`` is known otherwise)."""
        shared = doses is not None and doses.num_units == 1
        per_unit = (x, y, mask, covariates, t if t.dim() == 2 else None, None if doses is None or shared else doses.time)
        N = next((v.shape[0] for v in per_unit if v is not None), num_trajectories)
        if N is None and shared:
            N = 1
        if N is None:
            raise ValueError("num_trajectories: give x, y, mask or num_trajectories to set the number of trajectories")
        return N

    def _checked_covariates(self, covariates, like):
        """``covariates`` checked against the model: ``(N, covariate_dim)`` for a covariate model; refused by a
        model with unit effects but no covariate model (they would be ignored); accepted unused (``None``) by a
        model without unit effects, which has nothing for them to shift."""
        if covariates is None:
            if self.covariate_dim:
                raise ValueError(f"covariates: the model expects ({self.covariate_dim},) covariates per unit, got "
                                 "None")
            return None
        if not torch.is_tensor(covariates):
            raise TypeError(f"covariates: expected a tensor (N, C), got {type(covariates).__name__}")
        if not self.covariate_dim:
            if self.has_unit_effects:
                raise ValueError(f"covariates: the model has no covariate model (covariate_dim=0), so the "
                                 f"{tuple(covariates.shape)} covariates given would be ignored; build it with "
                                 "covariate_dim (and covariate_loc, covariate_scale) or pass covariates=None")
            return None
        if covariates.dim() != 2 or covariates.shape[-1] != self.covariate_dim:
            raise ValueError(f"covariates: the model expects ({self.covariate_dim},) covariates per unit, got "
                             f"{tuple(covariates.shape)}")
        return check_tensor(covariates, "covariates").to(like)

    def _checked_data(self, t, x, y, mask, x_times, covariates=None):
        """:func:`~pyro_node_uq.validation.check_trajectory_data` and the covariates' check once per data: MCMC and
        SVI call the model on the same tensors thousands of times, and the check (several reductions over the
        data) is a measurable part of a NUTS potential.  The last data are held (so their ids cannot be reused)
        with their versions (so an in-place change is checked again).  Returns ``(y, mask, covariates)``."""
        data = (t, x, y, mask, x_times, covariates)
        key = tuple((id(v), v._version) if torch.is_tensor(v) else v for v in data)
        last = self.__dict__.get("_validated")
        if last is None or last[0] != key or torch.jit.is_tracing():
            checked = check_trajectory_data(t, x, y, mask, self.input_dim, self.obs_dim, x_times)
            last = (key, data, (*checked, self._checked_covariates(covariates, t)))
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
