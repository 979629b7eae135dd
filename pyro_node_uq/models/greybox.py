"""A grey-box hierarchical NODE: a mechanistic field with per-unit log-normal parameters plus a shrunk network.

    dh_i/dt = f(h_i, x_i(t); theta_i) + g(h_i, x_i(t); w),   log theta_i = log theta_pop + B c_i + eta_i
"""
from collections import OrderedDict
from contextlib import contextmanager, nullcontext

import pyro
import pyro.distributions as dist
import torch

from ..distributions import NODESolution, ODESolver, solve_node
from ..distributions.modelled_solve import solve_modelled
from ..nn import BatchedMLP
from ..utils.tensors import broadcast_shapes
from ..validation import OnDivergence, check_positive
from .dose_parameters import modelled_infusions, with_dose_parameters
from .hierarchical import HierarchicalNODEModel
from .node import _left_of_trajectories, init_to_glorot
from .structures import get_structure

__all__ = ["DEFAULT_TOLERANCE", "GreyBoxField", "GreyBoxNODEModel"]

#: the default solve's relative tolerance; its absolute tolerance is this times ``state_scale``, so that it follows
#: the units of the states (amounts in the doses' units).  ``benchmarks/greybox_solve_cost.py`` measures its cost and
#: its error against a tight solve.
DEFAULT_TOLERANCE = 1e-5


class GreyBoxField:
    """The vector field ``f(h, x; theta) + g(h, x; w)`` in the calling convention of the NODE solve.

    :func:`~pyro_node_uq.distributions.solve_node` calls ``field(params, [h, x])`` with the weights in
    ``params``; here ``params`` also carries the units' parameters ``"F.theta"`` ``batch + (P,)`` (in the
    structure's parameter order) and ``"F.0.bias"`` ``(H,)`` (zero; the solve adds an infusion's rate to it).  The
    correction is ``g = c r * (G([h / s, x]) - G([0, x]))`` with the network ``G`` (``None``: no correction), the
    state scale ``s``, the per-state output scale ``r`` (state per time) and the relative size ``c`` (times
    ``params["F.size"]`` ``batch + (1,)`` where given: a sampled size): it vanishes
    at the zero state (without drug nothing changes), reads states of order 1, and one unit of ``G``'s output is
    the fraction ``c`` of the mechanism's own rates, so weights of order 1 (their prior scale) give a correction
    that is small against ``f`` whatever the units of the states and of time.

    :param Structure structure: the mechanistic part.
    :param int input_dim: number of inputs ``x``.
    :param BatchedMLP correction: the network ``G`` (inputs ``H + D``, outputs ``H``), or ``None``.
    :param float state_scale: ``s``.
    :param output_scale: ``r``: a number or ``(H,)`` values (default ``s`` times :meth:`Structure.rates
        <pyro_node_uq.models.structures.Structure.rates>` at the structure's typical parameters).
    :param float size: ``c``.
    :param tuple corrected: ``None`` (default: ``G`` adds to the rates as above) or names of the structure's
        parameters that ``G`` (then with one output per name) corrects instead: within the field each unit's
        ``theta_k`` becomes ``theta_k exp(c (G_k([h / s, x]) - G_k([0, x])))``, a state-dependent parameter (a
        clearance that falls as elimination saturates) that keeps every unit's own scale and is the unit's
        parameter at the zero state.  The structure's observation reads the uncorrected parameters.
    :param volumes: ``None`` (the correction reads amounts ``h / s``) or ``(H,)`` typical volumes ``V_typ`` of the
        structure's :attr:`~pyro_node_uq.models.structures.Structure.volumes`: the correction then reads every
        unit's concentration-like states ``(h_j / V_ij) / (s / V_typ,j)``, with ``V_ij`` the unit's own volume
        parameter of state ``j`` (so that it sees what a concentration-dependent process such as saturable
        elimination depends on, and tells a unit with a large volume from one with a small one); the input is
        still of order 1 and zero at the zero state.
    """

    name, num_layers, activation, out_activation = "F", 1, None, None

    def __init__(self, structure, input_dim=0, correction=None, state_scale=1.0, output_scale=None, size=1.0,
                 volumes=None, corrected=None):
        if volumes is not None and structure.volumes is None:
            raise ValueError(f"volumes: structure {structure.name!r} defines no volumes; the correction can only "
                             "read amounts (volumes=None)")
        self.volumes = None if volumes is None else torch.as_tensor(volumes, dtype=torch.float64).expand(
            structure.hidden_dim).clone()
        self.structure, self.correction, self.state_scale = structure, correction, float(state_scale)
        H = structure.hidden_dim
        self.sizes, self.input_dim = (H + input_dim, H), int(input_dim)
        self.corrected = None if corrected is None else tuple(corrected)
        if self.corrected is not None:  # the correction multiplies parameters: its size alone, on the log scale
            self.output_scale = torch.ones((), dtype=torch.float64)
        else:
            r = self.state_scale * structure.rates() if output_scale is None else output_scale
            self.output_scale = torch.as_tensor(r, dtype=torch.float64).expand(H).clone()
        self.size = float(size)
        self._held = None

    def param_shapes(self):
        return OrderedDict([("F.0.bias", torch.Size((self.sizes[-1],)))])

    @contextmanager
    def holding(self, params):
        """Within the block, every call with these ``params`` reuses what does not change during a solve: the
        named parameters, the correction's output scale ``c r`` and, without inputs, its value at the zero state
        ``G(0)``.  A solve evaluates the field hundreds of times with the same weights; the values are the same
        as without the block, a call with other parameters computes its own."""
        theta = params["F.theta"]
        named = {k: theta[..., j] for j, k in enumerate(self.structure.param_names)}
        r = g0 = inv = None
        if self.correction is not None:
            r, inv = self._output_factor(params, theta), self._input_factor(named, theta)
            if not self.input_dim:
                g0 = self.correction(params, theta.new_zeros(self.sizes[-1]))
        self._held = (theta, params.get("R.0.weight"), named, r, inv, g0)
        try:
            yield
        finally:
            self._held = None

    def _constants(self, params):
        theta, held = params["F.theta"], self._held
        if held is not None and held[0] is theta and held[1] is params.get("R.0.weight"):
            return held[2:]
        named = {k: theta[..., j] for j, k in enumerate(self.structure.param_names)}
        if self.correction is None:
            return named, None, None, None
        return named, self._output_factor(params, theta), self._input_factor(named, theta), None

    def _output_factor(self, params, theta):
        """The correction's output factor ``c r`` (``r`` per state, or 1 for ``corrected`` parameters), times the
        sampled relative size ``"F.size"`` ``batch + (1,)`` where the model samples one
        (``correction_size="latent"``)."""
        r = self.size * self.output_scale.to(theta)
        size = params.get("F.size")
        return r if size is None else r * size[..., None]

    def _input_factor(self, named, theta):
        """The factor taking states to the correction's input: ``1 / s``, or with volumes ``V_typ / (s V_i)``
        ``batch + (H,)`` from the units' volume parameters."""
        if self.volumes is None:
            return 1.0 / self.state_scale
        V = torch.stack([named[v] for v in self.structure.volumes], -1)
        return self.volumes.to(theta) / (self.state_scale * V)

    def correction_input(self, params, h):
        """The correction's state input for states ``h`` ``batch + (H,)``: ``h / s``, or with volumes the
        concentration-like ``h V_typ / (s V_i)`` (:class:`GreyBoxField`)."""
        return h * self._constants(params)[2]

    def __call__(self, params, inp):
        H = self.sizes[-1]
        h, x = inp[..., :H], (inp[..., H:] if inp.shape[-1] > H else None)
        named, r, inv, g0 = self._constants(params)
        if self.correction is None:
            return self.structure.field(h, x, named) + params["F.0.bias"]
        if g0 is None:
            g0 = self.correction(params, torch.cat([torch.zeros_like(h), x], -1) if x is not None
                                 else torch.zeros_like(h))
        scaled = torch.cat([h * inv, x], -1) if x is not None else h * inv
        g = r * (self.correction(params, scaled) - g0)
        if self.corrected is None:
            return self.structure.field(h, x, named) + params["F.0.bias"] + g
        named = dict(named)
        for j, k in enumerate(self.corrected):
            named[k] = named[k] * g[..., j].exp()
        return self.structure.field(h, x, named) + params["F.0.bias"]


def _holding(R, params):
    """``R.holding(params)`` for a :class:`GreyBoxField`, no context for another field."""
    return R.holding(params) if isinstance(R, GreyBoxField) else nullcontext()


class GreyBoxNODEModel(HierarchicalNODEModel):
    """A grey-box neural NLME: a mechanistic :class:`~pyro_node_uq.models.structures.Structure` with named
    parameters, per-unit log-normal random effects on them, and an optional network correction shrunk to zero.

    .. math::

        dh_i/dt = f(h_i, x_i(t); \\theta_i) + g(h_i, x_i(t); w) + u_i(t),\\quad
        \\log\\theta_i = \\log\\theta_{pop} + B c_i + \\eta_i,\\quad
        y_i = \\mathrm{observe}(h_i, x_i, \\theta_i) + \\epsilon

    Sample sites: ``"<name>_pop"`` (``LogNormal(log typical[name], typical_prior)``, one per parameter: the
    typical value, e.g. ``"CL_pop"``), the random effects of the parameters in ``random_effects``
    (``"eta_z"`` / ``"eta"`` ``(N, k)`` inside the plate ``"trajectories"``, with ``omega`` and, with covariates,
    ``beta``, exactly as in :class:`HierarchicalNODEModel`), the correction network's weights ``R.*`` (prior
    ``Normal(0, prior_scale)``; the correction is ``g = c r (G([h / s, x]) - G([0, x]))`` of
    :class:`GreyBoxField` (or reads concentrations, ``correction_input``), whose output is the fraction
    ``c = correction_prior`` of the mechanism's rates ``r``, so
    that with little data ``g`` stays small against ``f`` and the model is the mechanistic one), the noise scale; deterministic ``"theta"`` ``(N, P)`` records every unit's parameters.  With
    no correction, a structure with a closed-form solution and bolus doses only, the states come from the closed
    form (exact and fast); otherwise from an ODE solve of the whole ensemble (``torchdiffeq``; default ``dopri5``).
    Doses with a modelled rate or duration (rate code -1 / -2, NONMEM's ``RATE``) take it from the parameters
    ``R<n>`` / ``D<n>`` of ``dose_parameters``; they are solved in closed form where the structure's closed form
    takes infusions (the one-compartment structures, given infusions alongside included), else by
    :func:`~pyro_node_uq.distributions.modelled_solve.solve_modelled`.

    :param structure: a :class:`~pyro_node_uq.models.structures.Structure` or the name of one in
        :data:`~pyro_node_uq.models.structures.STRUCTURES`.
    :param int input_dim: inputs ``x`` (default: the structure's).
    :param int obs_dim: observed outputs: the structure's (``None`` or equal to it).
    :param random_effects: parameter names with a random effect (default: all).
    :param dict typical: prior medians of the typical parameters (default: the structure's values).
    :param dict dose_parameters: modelled infusion rates and durations as further parameters, name -> prior
        median: ``"R<n>"`` the rate of the doses coded -1 (NONMEM's ``RATE`` -1), ``"D<n>"`` the duration of those
        coded -2, into state ``n`` (1-based in the structure's states: the central compartment is 1, a depot 2;
        :mod:`~pyro_node_uq.models.dose_parameters`).  They are log-normal with a random effect like the others;
        with them the closed form (where the structure's solves infusions) or the ODE solve runs every dose's
        rate and end from the unit's parameters.
    :param float typical_prior: log-scale std of the typical parameters' log-normal prior.
    :param tuple correction: hidden widths of the correction network ``G``, or ``None`` for none.
    :param float correction_prior: ``c``: the correction's size per unit of the network's output, relative to
        the mechanism's rates (default ``0.1``: a tenth of them), or with ``correction_target="parameters"`` on the
        parameters' log scale (default ``1.0``: within a factor ``e`` of the unit's parameters).
    :param float state_scale: the state scale ``s`` of the correction (e.g. a typical dose).
    :param correction_scale: the rates' scale ``r`` (state per time), a number or one per state; default ``s``
        times :meth:`~pyro_node_uq.models.structures.Structure.rates` at the prior medians ``typical``
        (``correction_target="rates"`` only).
    :param str correction_size: ``"fixed"`` (default: the correction's size per unit of the network's output is
        ``correction_prior``) or ``"latent"``: that size times a sampled ``"correction_size"`` ``HalfNormal(1)``, a
        global shrinkage scale (automatic relevance determination) that lets the data switch the correction off
        where it does not pay and keep it where it does.
    :param str correction_target: ``"rates"`` (default: ``g`` adds to the field, the fraction ``correction_prior``
        of the mechanism's rates per unit of the network's output) or ``"parameters"``: the network corrects every
        parameter that is not a volume (``CL``, ``ka``, ``Vmax``...) as a function of the state,
        ``theta_ik exp(c (G_k(h) - G_k(0)))`` with ``c = correction_prior`` on the log scale
        (:class:`GreyBoxField`'s ``corrected``): each unit keeps its own parameters' scale, so a clearance that
        saturates with concentration applies to every unit in proportion to its own clearance.  The observation
        reads the uncorrected parameters, which is exact for the structures whose observation reads only volumes
        (the pharmacokinetic ones).
    :param str correction_input: what the correction reads: ``"amount"`` (default; the states over ``s``) or
        ``"concentration"`` (each unit's states over its own volume parameters, scaled by the typical
        concentration ``s / V_typ``; for structures that define
        :attr:`~pyro_node_uq.models.structures.Structure.volumes`, such as the pharmacokinetic ones).
    :param solver: :class:`~pyro_node_uq.distributions.ODESolver` or dict of its options (default ``dopri5``
        with ``rtol`` :data:`DEFAULT_TOLERANCE` and ``atol`` that times ``state_scale``; a dict's missing options take
        these values); always solved by ``torchdiffeq``.
    :param str omega: ``"latent"`` (default) or ``"learned"``: the std of ``log theta_i`` around its mean;
        ``omega_init``, ``omega_prior``, ``parameterization``, the covariate model and ``dose_scale`` are as in
        :class:`HierarchicalNODEModel`.
    :param kwargs: the other options of :class:`HierarchicalNODEModel` and :class:`NODEModel` (noise, error model).

    It is :class:`NODEModel`'s model body with these component hooks: :meth:`population_sites` (the typical
    parameters), :meth:`unit_field` (the units' parameters in a :class:`GreyBoxField`) and :meth:`unit_solve` (the
    closed form, or the solve, observed through the structure).

    Example (theophylline-like one-compartment oral data, one unit)::

        >>> import pyro, torch
        >>> from pyro_node_uq.distributions import DoseSchedule
        >>> model = GreyBoxNODEModel("one_compartment_oral", typical={"CL": 2.8, "V": 32.0, "ka": 1.5})
        >>> doses = DoseSchedule.from_lists([[0.0]], [[320.0]], [[1]], dtype=torch.float64)
        >>> t = torch.tensor([0.5, 1.0, 2.0, 8.0], dtype=torch.float64)
        >>> typical = {"CL_pop": torch.tensor(2.8), "V_pop": torch.tensor(32.0), "ka_pop": torch.tensor(1.5)}
        >>> with pyro.poutine.condition(data={"eta_z": torch.zeros(1, 3), **typical}):   # the typical unit
        ...     tr = pyro.poutine.trace(model).get_trace(t, None, None, num_trajectories=1, doses=doses)
        >>> [round(v, 2) for v in tr.nodes["y_mean"]["value"][0, :, 0].tolist()]        # concentrations
        [5.15, 7.36, 8.39, 5.27]
    """

    def __init__(self, structure, input_dim=None, obs_dim=None, random_effects=None, typical=None, typical_prior=1.0,
                 correction=None, correction_prior=None, state_scale=1.0, correction_scale=None, omega="latent",
                 omega_init=0.3, omega_prior=1.0, scale="latent", solver=None, prior_scale=1.0, dose_parameters=None,
                 correction_input="amount", correction_size="fixed", correction_target="rates", **kwargs):
        structure = with_dose_parameters(get_structure(structure), dose_parameters)
        D = len(structure.inputs) if input_dim is None else int(input_dim)
        if D < len(structure.inputs):
            raise ValueError(f"input_dim: structure {structure.name!r} reads {len(structure.inputs)} inputs "
                             f"{structure.inputs}, got input_dim={D}")
        if obs_dim is not None and obs_dim != structure.obs_dim:
            raise ValueError(f"obs_dim: structure {structure.name!r} observes {structure.obs_dim} outputs, got "
                             f"obs_dim={obs_dim}")
        unknown = [p for p in (typical or {}) if p not in structure.param_names]
        if unknown:
            raise ValueError(f"typical: expected parameter names of structure {structure.name!r} "
                             f"{structure.param_names}, got unknown {unknown}")
        correction = None if correction is None else tuple(correction)
        if correction_input not in ("amount", "concentration"):
            raise ValueError(f"correction_input: expected 'amount' or 'concentration', got {correction_input!r}")
        corrected = None
        if correction_target == "parameters":
            volumes = set(structure.volumes or ())
            corrected = tuple(p for p in structure.param_names if p not in volumes)
            if correction_scale is not None:
                raise ValueError("correction_scale: a correction of the parameters acts on their log scale "
                                 "(correction_prior sets its size); correction_scale is for correction_target='rates'")
        elif correction_target != "rates":
            raise ValueError(f"correction_target: expected 'rates' or 'parameters', got {correction_target!r}")
        if correction_size not in ("fixed", "latent"):
            raise ValueError(f"correction_size: expected 'fixed' or 'latent', got {correction_size!r}")
        if correction_input == "concentration" and structure.volumes is None:
            raise ValueError(f"correction_input='concentration': structure {structure.name!r} defines no volumes "
                             "(Structure(volumes=...)); use 'amount'")
        if correction_prior is None:  # a tenth of the rates, or parameters within a factor e
            correction_prior = 0.1 if correction_target == "rates" else 1.0
        check_positive(correction_prior, "correction_prior")
        check_positive(state_scale, "state_scale")
        check_positive(typical_prior, "typical_prior")
        if solver is None or isinstance(solver, dict):  # an adaptive solve unless told otherwise
            solver = ODESolver.coerce({"method": "dopri5", "rtol": DEFAULT_TOLERANCE,
                                       "atol": DEFAULT_TOLERANCE * float(state_scale), **(solver or {})})
        if solver.backend == "fixed":
            raise ValueError("solver: a grey-box field is solved by torchdiffeq (backend 'auto' or 'torchdiffeq'), "
                             "not the network-only fixed-step path (backend='fixed')")
        solver = ODESolver(**{**solver.to_dict(), "backend": "torchdiffeq"})
        priors = prior_scale if isinstance(prior_scale, dict) else {"*": float(prior_scale)}
        self.structure, self.has_correction = structure, correction is not None  # read by _checked_effects
        super().__init__(obs_dim=structure.obs_dim, input_dim=D, hidden_dim=structure.hidden_dim,
                         effects=structure.param_names if random_effects is None else random_effects,
                         R_hidden=correction or (1,), Z_hidden=None, omega=omega, omega_init=omega_init,
                         omega_prior=omega_prior, scale=scale, solver=solver, prior_scale=priors, **kwargs)
        self.typical = {**structure.params, **(typical or {})}
        self.typical_prior, self.state_scale = float(typical_prior), float(state_scale)
        correction_scale = self._checked_correction_scale(correction_scale)
        self.correction_input = correction_input
        self.correction_size = correction_size if self.has_correction else "fixed"
        volumes = ([float(self.typical[v]) for v in structure.volumes] if correction_input == "concentration"
                   else None)
        self.correction_target = correction_target
        if corrected is not None and self.has_correction:  # one output per corrected parameter
            self.R = BatchedMLP("R", (*self.R.sizes[:-1], len(corrected)), self.R.activation)
        self.field = GreyBoxField(structure, D, self.R if self.has_correction else None, state_scale,
                                  correction_scale, correction_prior, volumes, corrected)

    def _checked_correction_scale(self, scale):
        """``correction_scale``: positive, one value or one per state; default from the structure's rates (only
        computed with a correction)."""
        H = self.structure.hidden_dim
        if scale is None:
            return self.state_scale * self.structure.rates(self.typical) if self.has_correction else torch.ones(H)
        r = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
        if r.numel() not in (1, H) or not bool((torch.isfinite(r) & (r > 0)).all()):
            raise ValueError(f"correction_scale: expected a positive number or {H} positive numbers (one per state "
                             f"{self.structure.states}), got {scale!r}")
        return r.expand(H)

    def _checked_effects(self, effects):
        """``random_effects``: distinct parameter names of the structure."""
        names, given = self.structure.param_names, effects
        iterable = not isinstance(effects, str) and hasattr(effects, "__iter__")
        effects = tuple(effects) if iterable else ()
        if not iterable or [e for e in effects if e not in names]:
            raise ValueError(f"random_effects: expected a tuple of parameter names of structure "
                             f"{self.structure.name!r} {names} (empty: no random effects), got {given!r}")
        if len(set(effects)) < len(effects):
            raise ValueError(f"random_effects: a parameter is given twice in {effects}")
        return effects

    # ------------------------------------------------------------------ structure
    @property
    def networks(self):
        """The correction network ``R`` (``G`` of :class:`GreyBoxField`), or none."""
        return OrderedDict(R=self.R) if self.has_correction else OrderedDict()

    @property
    def predict_sites(self):
        sites = dict(super().predict_sites)
        if self.record:
            sites["theta"] = 2
        return sites

    def init_loc_fn(self, seed=0):
        """The correction starts at zero (:meth:`HierarchicalNODEModel.init_loc_fn`), everything else at its prior
        median: the typical parameters at ``typical``, the effects at 0."""
        return super().init_loc_fn(seed) if self.has_correction else init_to_glorot(self, seed)

    def typical_sites(self):
        """Names of the typical-parameter sites, in the structure's parameter order."""
        return [f"{name}_pop" for name in self.structure.param_names]

    def layer_sites(self, subset):
        """As :meth:`HierarchicalNODEModel.layer_sites` (``"last_layer"``: the correction's last layer); the
        ``"random_effects"`` block also holds the typical parameters, which the effects are centred on."""
        sites = super().layer_sites(subset)
        return sites + self.typical_sites() if subset == "random_effects" else sites

    # ------------------------------------------------------------------ the component hooks
    def _typical_values(self, like):
        """The typical parameters ``(..., P)`` (batch dims left of the units' plate)."""
        out = []
        for name in self.structure.param_names:
            prior = dist.LogNormal(like.new_tensor(float(self.typical[name])).log(), self.typical_prior)
            out.append(_left_of_trajectories(pyro.sample(f"{name}_pop", prior), 0))
        return torch.stack(torch.broadcast_tensors(*out), -1)

    def population_sites(self, like):
        """The typical parameters ``"<name>_pop"``, then omega and beta (:class:`HierarchicalNODEModel`'s), and
        with ``correction_size="latent"`` the correction's relative size ``"correction_size"``
        (``HalfNormal(1)``, multiplying ``correction_prior``)."""
        sites = {"theta_pop": self._typical_values(like), **super().population_sites(like)}
        if self.correction_size == "latent":
            size = pyro.sample("correction_size", dist.HalfNormal(like.new_tensor(1.0)))
            sites["correction_size"] = _left_of_trajectories(size, 0)
        return sites

    def unit_field(self, params, effects, population, units):
        """:class:`GreyBoxField` with the units' parameters ``theta_i = theta_pop exp(eta_i)`` (recorded as
        ``"theta"``) next to the correction's weights."""
        theta = population["theta_pop"]
        if effects is not None:
            cols = [self.effects.index(p) if p in self.effects else None for p in self.structure.param_names]
            zero = effects.new_zeros(effects.shape[:-1])
            theta = theta * torch.stack([effects[..., j] if j is not None else zero for j in cols], -1).exp()
        M = units.index.shape[0]
        theta = theta.expand(broadcast_shapes(theta.shape[:-1], (M,)) + theta.shape[-1:])
        if self.record:
            pyro.deterministic("theta", theta, event_dim=1)
        params = {**params, "F.theta": theta, "F.0.bias": theta.new_zeros(self.hidden_dim)}
        if "correction_size" in population:
            params["F.size"] = population["correction_size"]
        return self.field, params, units.x, units.x_times

    def unit_solve(self, R, params, t, x, h0, **options):
        """The closed form of the structure (no correction, bolus doses, zero initial state at the first dose or
        observation; with modelled infusions also given infusions, where the closed form solves them) or the ODE
        solve (with modelled infusions :func:`~pyro_node_uq.distributions.modelled_solve.solve_modelled`); the
        mean is the structure's observation of the states."""
        theta = params["F.theta"]
        named = {k: theta[..., j] for j, k in enumerate(self.structure.param_names)}
        doses = options["doses"]
        modelled = doses is not None and bool(doses.modelled.any())
        closed = (self.structure.solution is not None and not self.has_correction and options["t0"] is None
                  and not torch.is_tensor(self.init) and self.init == "zero")
        if modelled:
            doses.check(hidden_dim=self.hidden_dim)
            rate, end = modelled_infusions(doses, named, self.dose_scale, f"structure {self.structure.name!r}")
        if closed and modelled and self.structure.solves_infusions:
            hidden = self.structure.solution(t, doses, named, infusions=(rate, end))
            diverged = torch.zeros(hidden.shape[:-2], dtype=torch.bool, device=t.device)
        elif modelled:
            if x is not None and self.input_dim:
                raise ValueError("doses: modelled infusions (rate -1 / -2) are solved for structures without "
                                 f"inputs x; {self.structure.name!r} reads {self.input_dim}")
            h0 = h0.expand(broadcast_shapes(h0.shape[:-1], theta.shape[:-1]) + (self.hidden_dim,))
            with _holding(R, params):
                hidden, diverged = solve_modelled(R, params, t, h0, doses, rate, end, t_mask=options["t_mask"],
                                                  t0=options["t0"], solver=options["solver"],
                                                  on_divergence=OnDivergence(options["on_divergence"]))
        elif closed and (doses is None or not bool((doses.rate[doses.mask] > 0).any())):
            if doses is None:
                hidden = theta.new_zeros(theta.shape[:-1] + (t.shape[-1], self.hidden_dim))
            else:
                hidden = self.structure.solution(t, doses, named)
            diverged = torch.zeros(hidden.shape[:-2], dtype=torch.bool, device=t.device)
        else:
            h0 = h0.expand(broadcast_shapes(h0.shape[:-1], theta.shape[:-1]) + (self.hidden_dim,))
            with _holding(R, params):
                sol = solve_node(R, None, params, t, x, h0, **options)
            hidden, diverged = sol.hidden, sol.diverged
        if x is not None and self.input_dim and self.structure.observe_fn is not None and options["x_times"] is not None:
            raise ValueError("x_times: this model observes through the inputs; give x at the observation times t")
        xs = x if x is not None and self.input_dim else None
        mean = self.structure.observe(hidden, xs, {k: v[..., None] for k, v in named.items()})
        return NODESolution(hidden, mean, diverged)

    def __repr__(self):
        return (f"GreyBoxNODEModel({self.structure.name!r}, random_effects={self.effects}, "
                f"correction={self.R.sizes[1:-1] if self.has_correction else None}, omega={self.omega!r})")
