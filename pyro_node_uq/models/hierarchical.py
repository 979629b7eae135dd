"""A neural mixed-effects NODE: population weights w, per-unit random effects eta_i ~ Normal(B c_i, Omega), doses."""
import math
import re

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from ..nn import BatchedMLP
from ..validation import MAX_SIZE, check_choice, check_int, check_positive
from .node import NODEModel, _left_of_trajectories, init_to_glorot

__all__ = ["EFFECTS", "PARAMETERIZATIONS", "HierarchicalNODEModel"]

EFFECTS = ("rate", "output", "input", "rate[k]", "outflow[k]")
_PER_STATE = re.compile(r"(rate|outflow)\[(\d+)\]$")
PARAMETERIZATIONS = ("noncentred", "centred")


def _checked_covariate_names(names, covariate_dim):
    """``(names, covariate_dim)``: distinct string names, as many as ``covariate_dim`` (which they set when 0)."""
    covariate_dim = check_int(covariate_dim, "covariate_dim", 0, MAX_SIZE)
    if names is None:
        return None, covariate_dim
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"covariate_names: expected a tuple of names, got {names!r}")
    names = tuple(names)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"covariate_names: {twice} given more than once in {names}; give each covariate once")
    if covariate_dim and covariate_dim != len(names):
        raise ValueError(f"covariate_names: {len(names)} names for covariate_dim={covariate_dim} covariates")
    return names, len(names)


def _checked_standardisation(value, name, covariate_dim, positive=False):
    """A covariate location or scale: ``None``, or a finite number or ``(covariate_dim,)`` values (positive for
    a scale), as a float64 tensor; ``None`` without covariates (a problem's configuration switched off with
    ``covariate_dim=0`` keeps its standardisation)."""
    if value is None or not covariate_dim:
        return None
    try:
        v = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: expected a number or {covariate_dim} numbers, got {value!r}") from None
    if v.shape not in ((), (covariate_dim,)):
        raise ValueError(f"{name}: expected a number or shape ({covariate_dim},) (one per covariate), got shape "
                         f"{tuple(v.shape)}")
    if not torch.isfinite(v).all() or (positive and not (v > 0).all()):
        raise ValueError(f"{name}: expected finite{' positive' if positive else ''} values, got {v.tolist()}")
    return v


class HierarchicalNODEModel(NODEModel):
    """Neural NLME: one NODE per unit i, sharing population weights, with a random effect ``eta_i`` per unit.

    .. math::

        dh_{i,k}/dt = e^{\\eta_{i,r} + \\eta_{i,r_k}} R_k(e^{\\eta_{i,f}} \\odot h_i, x_i(t), \\eta_{i,in}; w)
        + u_{i,k}(t),\\quad
        y_i = e^{\\eta_{i,o}} Z(h_i, x_i(t), \\eta_{i,in}; w) + \\epsilon,\\quad
        \\eta_i \\sim \\mathcal N(B c_i, \\mathrm{diag}(\\omega^2))

    where ``effects`` says where each component of eta enters: ``"rate"`` scales the vector field (a clearance-type
    effect: the unit's clock runs faster), ``"rate[k]"`` scales the derivative of hidden component ``k`` only
    (per-state rates: with a gut and a central compartment, ``("rate[0]", "rate[1]")`` gives each unit its own
    elimination and absorption speed, which one ``"rate"`` ties together), ``"outflow[k]"`` scales how R reads
    hidden component ``k`` (R sees ``e^eta h_k``: ``eta_f`` above is zero except at the components with this
    effect): with compartmental dynamics, linear in the amounts, this scales the rate constant of every flow out of
    compartment ``k`` and nothing else, mass conserved (``"outflow[1]"`` with the gut as component 1 is the
    absorption rate ka; ``"rate[1]"`` would speed up the gut's emptying without the matching inflow into the
    central compartment), ``"output"`` scales the observation (a volume-type effect), ``"input"`` is an extra input
    of R (and Z).  Doses jump the state (boluses) or add the
    infusion rate ``u_i(t)``.  Covariates ``c_i`` (standardised with ``covariate_loc`` / ``covariate_scale``) shift
    the mean of eta through the latent ``beta`` (``B``).  The per-unit latent lives inside the plate
    ``"trajectories"`` (``dim=-1``).  Non-centred (``parameterization="noncentred"``): ``"eta_z"`` ~ Normal(0, I)
    and ``eta = B c + omega * eta_z`` is recorded as the deterministic site ``"eta"``, the choice for units with few
    or noisy observations each (the effects are then mostly prior, and a centred ``eta`` meets the funnel).  Centred
    (``"centred"``): ``"eta"`` ~ Normal(B c, diag(omega^2)) is the latent, the choice when each unit's data pin its
    effects down (dense PK sampling): there a non-centred ``eta_z`` and omega lie on a ridge (``eta_z = eta /
    omega``) that MAP climbs towards a large omega (the non-centred joint density has no ``-N log omega`` term; only
    omega's prior stops it) and that mean-field guides and samplers cross slowly.  MAP of a centred model is
    ill-posed the other way (the joint density grows without bound as omega goes to 0): start centred fits from a
    non-centred MAP.  Units marked ``new_units`` always use the non-centred ``"eta_z_new"`` / ``"eta_new"`` (drawn
    from the population, not from the fitted units' posterior). ``omega`` is a point estimate (``omega="learned"``,
    a ``pyro.param``) or a latent, with a log-normal prior either way.
    Other options (error models, solver, noise scale) are :class:`NODEModel`'s, and so is the model body (data
    checks, the plate and its subsampling, the solve and the likelihood): the effects are its component hooks
    (:meth:`population_sites`: omega, beta, the typical rates; :meth:`unit_sites`: the units' effects;
    :meth:`unit_field`: R's weights and inputs per unit; :meth:`unit_mean`: the output effect).

    :param tuple effects: where each random-effect component enters, from :data:`EFFECTS` (``"rate[k]"`` and
        ``"outflow[k]"`` with ``k`` a hidden component, ``0 <= k < hidden_dim``), each at most once but
        ``"input"`` (one extra input of R per entry); ``()`` is the population-only model (no random effects:
        doses only; a split's covariates are accepted and not used).
    :param int covariate_dim: number of covariates ``C`` (a model with effects and ``covariate_dim=0`` refuses
        covariates rather than ignore them).
    :param tuple covariate_names: names of the ``C`` covariates (distinct; sets ``covariate_dim`` when that is
        not given).
    :param covariate_loc, covariate_scale: standardisation of the covariates, a number or ``(C,)`` each
        (default 0 and 1; the scale positive; not used with ``covariate_dim=0``).
    :param omega: ``"learned"`` or ``"latent"``.
    :param str parameterization: ``"noncentred"`` (latent ``eta_z``) or ``"centred"`` (latent ``eta``) for the
        fitted units' effects.
    :param float omega_init: median of the ``LogNormal(log omega_init, omega_prior)`` prior of omega (the
        initial value of a learned omega, which is penalised by this prior so MAP cannot send it to 0 or infinity).
    :param float omega_prior: log-scale of that prior.
    :param float dose_scale: doses enter the state multiplied by this.
    :param str typical_rate: ``"latent"``: the population's typical rates are latents of their own,
        ``"typical_rate"`` ~ Normal(0, 1) (log scale, one per rate effect), which shift every unit's rate effects in
        the solve: ``e^{typical + eta_i}`` scales R.  The network's output scale can carry the same factor (the
        likelihood is exactly invariant under ``typical + c`` with R's last layer scaled by ``e^{-c}``), so this
        adds no model freedom; it gives a guide that point-estimates the network a coordinate for the uncertainty
        of the typical rate, which every unit's effect shares (the effects' prior alone pins their common shift,
        to about ``omega / sqrt(N)``): :func:`~pyro_node_uq.methods.run_layerwise_effects` puts it in its block.
        ``None`` (default): no such site.
    :param str equilibrium: ``"zero"``: the zero state is an equilibrium, ``R(0) = 0`` (with zero inputs): R's
        last bias is not a latent but ``-R(0)`` of the other weights, so without drug nothing changes and, once
        the doses are absorbed, concentrations can only fall towards 0.  ``None`` (default): a free bias, with
        which the fitted field can have a steady state at a positive concentration beyond the observed times
        (a free NODE fitted to theophylline's first 7 h levels off near 3 mg/L where the data fall to 1 mg/L at
        24 h).  Not with ``"input"`` effects.

    Example::

        >>> import pyro
        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("pk_repeated", num_units=6)
        >>> model = problem.default_model()
        >>> tr = pyro.poutine.trace(model).get_trace(*problem.train.args, **problem.train.kwargs)
        >>> tr.nodes["eta_z"]["value"].shape, tr.nodes["y_mean"]["value"].shape[0]
        (torch.Size([4, 2]), 4)
    """

    def __init__(self, obs_dim=1, input_dim=0, effects=("rate", "output"), covariate_dim=0, covariate_loc=None,
                 covariate_scale=None, omega="learned", omega_init=0.3, omega_prior=0.5, dose_scale=1.0,
                 parameterization="noncentred", equilibrium=None, typical_rate=None, covariate_names=None,
                 **kwargs):
        super().__init__(obs_dim, input_dim, **kwargs)
        self.effects = self._checked_effects(effects)
        self.covariate_names, self.covariate_dim = _checked_covariate_names(covariate_names, covariate_dim)
        if self.covariate_dim and not self.effects:
            raise ValueError("covariate_dim: covariates shift the random effects' mean; give effects as well")
        self.covariate_loc = _checked_standardisation(covariate_loc, "covariate_loc", self.covariate_dim)
        self.covariate_scale = _checked_standardisation(covariate_scale, "covariate_scale", self.covariate_dim,
                                                        positive=True)
        check_choice(omega, "omega", ("learned", "latent"))
        check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
        self.parameterization = parameterization
        self.omega, self.omega_init = omega, check_positive(omega_init, "omega_init (the median of omega's prior)")
        self.omega_prior = check_positive(omega_prior, "omega_prior (the log-scale of omega's prior)")
        self.dose_scale = check_positive(dose_scale, "dose_scale (doses enter the state multiplied by it)")
        n_in, act = self.effects.count("input"), self.R.activation
        self.R = BatchedMLP("R", (self.hidden_dim + input_dim + n_in, *self.R.sizes[1:]), act)
        if self.Z is not None:
            self.Z = BatchedMLP("Z", (self.hidden_dim + input_dim + n_in, *self.Z.sizes[1:]), act)
        if self.init == "input":
            raise ValueError("init: 'input' is not supported by HierarchicalNODEModel (doses set the state)")
        if equilibrium not in (None, "zero"):
            raise ValueError(f"equilibrium: expected None or 'zero', got {equilibrium!r}")
        if equilibrium and "input" in self.effects:
            raise ValueError("equilibrium='zero' with an 'input' effect: R(0) would depend on the unit's effects")
        self.equilibrium = equilibrium
        if typical_rate not in (None, "latent"):
            raise ValueError(f"typical_rate: expected None or 'latent', got {typical_rate!r}")
        if typical_rate and not self._rates:
            raise ValueError(f"typical_rate='latent' needs a 'rate' or 'rate[k]' effect, got effects={self.effects}")
        self.typical_rate = typical_rate

    def _checked_effects(self, effects):
        """``effects`` as a tuple of known effects (per-state ones on existing components), none twice but
        ``"input"``."""
        given = effects
        iterable = not isinstance(effects, str) and hasattr(effects, "__iter__")
        effects = tuple(effects) if iterable else ()
        bad = not iterable or [e for e in effects if not isinstance(e, str) or e not in EFFECTS[:3] and not (
            _PER_STATE.match(e) and int(_PER_STATE.match(e).group(2)) < self.hidden_dim)]
        if bad:
            raise ValueError(f"effects: expected a tuple of {EFFECTS} with 0 <= k < hidden_dim={self.hidden_dim} "
                             f"(empty: a population-only model), got {given!r}")
        twice = sorted({e for e in effects if e != "input" and effects.count(e) > 1})
        if twice:
            raise ValueError(f"effects: {twice} given more than once in {effects}; two effects of one kind are not "
                             "identifiable (only their sum enters the model): give each once")
        return effects

    @property
    def eta_dim(self):
        return len(self.effects)

    def _index(self, kind):
        return [i for i, e in enumerate(self.effects) if e == kind]

    @property
    def _rates(self):
        """Indices of the rate effects (``"rate"``, ``"rate[k]"``)."""
        return [j for j, e in enumerate(self.effects) if e == "rate" or e.startswith("rate[")]

    def _at_rates(self, value):
        """``(..., len(_rates)) -> (..., eta_dim)``: ``value`` at the rate effects' positions, 0 elsewhere."""
        out = value.new_zeros(value.shape[:-1] + (self.eta_dim,))
        out[..., self._rates] = value
        return out

    def _typical_shift(self, like):
        """With ``typical_rate="latent"``: the latent log typical rates, one per rate effect, placed at those
        effects' positions of an ``(eta_dim,)`` vector (``(..., 1, eta_dim)`` with batched draws) that every
        unit's effects are shifted by in the solve (the units' ``eta`` themselves stay centred on ``B c_i``);
        else ``None``."""
        if not getattr(self, "typical_rate", None):
            return None
        prior = dist.Normal(like.new_zeros(len(self._rates)), 1.0).to_event(1)
        return self._at_rates(_left_of_trajectories(pyro.sample("typical_rate", prior), 1))

    # ------------------------------------------------------------------ random effects
    def _omega(self, like):
        prior = dist.LogNormal(like.new_full((self.eta_dim,), self.omega_init).log(), self.omega_prior).to_event(1)
        if self.omega == "learned":
            omega = pyro.param("omega", like.new_full((self.eta_dim,), self.omega_init), constraint=constraints.positive)
            pyro.factor("omega_prior", prior.log_prob(omega))
            return omega
        return _left_of_trajectories(pyro.sample("omega", prior), 1)

    def _beta(self, like):
        """The covariate coefficients ``B`` ``(eta_dim, C)`` (latent ``"beta"``), or ``None`` without covariates."""
        if not self.covariate_dim:
            return None
        prior = dist.Normal(like.new_zeros(self.eta_dim, self.covariate_dim), 1.0).to_event(2)
        return _left_of_trajectories(pyro.sample("beta", prior), 2)

    def _effects_mean(self, beta, covariates, like):
        """``B c_i`` on the standardised covariates (checked ones), or zeros ``(eta_dim,)`` without covariates."""
        if beta is None:
            return like.new_zeros(self.eta_dim)
        loc = 0.0 if self.covariate_loc is None else self.covariate_loc.to(like)
        scale = 1.0 if self.covariate_scale is None else self.covariate_scale.to(like)
        return (beta @ ((covariates.to(like) - loc) / scale)[..., None]).squeeze(-1)

    def _eta_loc(self, covariates, like):
        """The effects' mean ``B c_i`` of units with ``covariates`` (samples ``"beta"``)."""
        covariates = self._checked_covariates(covariates, like) if self.covariate_dim else None
        return self._effects_mean(self._beta(like), covariates, like)

    # ------------------------------------------------------------------ the model
    def init_loc_fn(self, seed=0):
        """:class:`~pyro_node_uq.models.init_to_glorot` with R's last layer at zero: fits start from a field
        with no dynamics (doses just accumulate) instead of a random fast one, a mode they do not leave."""
        init = init_to_glorot(self, seed)
        last = self.R.num_layers - 1
        for name in (f"R.{last}.weight", f"R.{last}.bias"):
            init.values[name] = torch.zeros_like(init.values[name])
        return init

    def layer_sites(self, subset):
        """As :meth:`NODEModel.layer_sites`, plus ``"random_effects"``: the random-effects block, i.e. the fitted
        units' latent (``eta_z`` or ``eta``) and, where they are latent sites, the population parameters of the
        effects (``omega`` with ``omega="latent"``, ``beta`` with covariates).  A guide over this block alone (the
        network a point estimate) captures how each unit's effects and their spread are estimated together."""
        if subset != "random_effects":
            return [s for s in super().layer_sites(subset) if s in self.weight_shapes()]
        return [self._unit_site] + (["omega"] if self.omega == "latent" else []) + (
            ["beta"] if self.covariate_dim else []) + (["typical_rate"] if getattr(self, "typical_rate", None) else [])

    def warm_start_values(self, values, split):
        """The fit's values moved along two exact symmetries of the likelihood, so the next fit starts where the
        effects' prior puts them rather than where the last fit stopped on a ridge:

        1. **The units' mean rate effect goes into R's last layer.**  The likelihood is invariant under
           ``eta_rate -> eta_rate - c`` with R's last-layer rows scaled by ``exp(c)`` (the rate effect multiplies
           those rows), so only the effects' prior pins their mean, and weakly: a shift of all N units' effects
           together is opposed by ``N c / omega^2`` alone.  Fits cross that ridge slowly (MAP, and the point
           network of a layer-wise fit, end with every unit's effect off by the same amount); here ``c`` is the
           units' mean deviation from ``B c_i`` (with ``equilibrium="zero"`` the last bias is ``-R(0)``, which
           scales with the weight).
        2. **omega becomes the spread of the units' effects**: the root mean square of their deviations from
           ``B c_i`` (the EM update of omega with the effects at their point values), kept within the central
           95% of omega's prior, ``omega_init exp(+-2 omega_prior)``; a non-centred ``eta_z`` is rescaled so that
           ``eta = B c + omega eta_z`` is unchanged.  A non-centred MAP inflates omega about twofold (its joint
           density has no ``-N log omega`` term: ``eta_z`` shrinks as omega grows along the ridge ``eta_z = eta /
           omega``), and guides started there cross that ridge slowly: their new units' predictive bands were
           too wide.  A learned omega (a ``pyro.param``) is returned under ``"omega"`` as well, for
           :func:`~pyro_node_uq.methods.carry_model_params` to put into the next fit's param store.

        Values without the unit effects are returned unchanged; the first move also needs R's last layer, the
        second at least two units.
        """
        site = self._unit_site
        if not self.eta_dim or site not in values:
            return values
        values = dict(values)
        omega = values["omega"] if "omega" in values else pyro.param("omega").detach()
        beta = {"beta": values["beta"]} if "beta" in values else {}
        loc = pyro.poutine.condition(self._eta_loc, beta)(split.covariates, values[site])
        deviation = values[site] * omega if site == "eta_z" else values[site] - loc
        rates = self._rates
        last = self.R.num_layers - 1
        w, b = f"R.{last}.weight", f"R.{last}.bias"
        if rates and w in values:
            shift = self._at_rates(deviation.mean(-2)[rates])  # (k,)
            deviation = deviation - shift
            if "typical_rate" in values:  # the latent typical rates go into the network too, and restart at 0
                shift = shift + self._at_rates(values["typical_rate"])
                values["typical_rate"] = torch.zeros_like(values["typical_rate"])
            rows = self._per_state_factor(shift, ("rate",))  # (hidden_dim,): exp of each row's summed shift
            values[w] = values[w] * rows[:, None]
            if b in values:  # not a latent with equilibrium="zero"
                values[b] = values[b] * rows
        if deviation.shape[-2] >= 2:
            bound = 2 * self.omega_prior
            omega = deviation.pow(2).mean(-2).sqrt().clamp(self.omega_init * math.exp(-bound),
                                                           self.omega_init * math.exp(bound))
            values["omega"] = omega
        values[site] = deviation / omega if site == "eta_z" else loc + deviation
        return values

    @property
    def _anchored_bias(self):
        return f"R.{self.R.num_layers - 1}.bias" if getattr(self, "equilibrium", None) == "zero" else None

    def weight_shapes(self):
        """As :meth:`NODEModel.weight_shapes`; with ``equilibrium="zero"`` without R's last bias (set by
        :meth:`_anchor`, not a latent)."""
        shapes = super().weight_shapes()
        shapes.pop(self._anchored_bias, None)
        return shapes

    def _anchor(self, params, like):
        """With ``equilibrium="zero"``: R's last bias set to ``-R(0)`` of the other weights, so ``R(0) = 0``."""
        if self.equilibrium is None:
            return params
        bias = self._anchored_bias
        zero_bias = like.new_zeros(self.hidden_dim)
        return {**params, bias: -self.R({**params, bias: zero_bias}, like.new_zeros(self.R.sizes[0]))}

    @property
    def _unit_site(self):
        return "eta" if self.parameterization == "centred" else "eta_z"

    # ------------------------------------------------------------------ the component hooks
    @property
    def has_unit_effects(self):
        return self.eta_dim > 0

    def population_sites(self, like):
        """omega, the covariate coefficients beta and the typical rates (those that exist)."""
        if not self.eta_dim:
            return {}
        return {"omega": self._omega(like), "beta": self._beta(like), "typical": self._typical_shift(like)}

    def unit_sites(self, population, units):
        """The units' effects ``eta`` ``batch + (M, eta_dim)`` around ``B c_i`` (fitted or new units)."""
        if not self.eta_dim:
            return None
        loc = self._effects_mean(population["beta"], units.covariates, units.t)
        return self._sample_effects(loc, population["omega"], units.new_units)

    def unit_field(self, params, effects, population, units):
        """R's weights per unit (the anchored bias, the rate and outflow effects shifted by the typical rates)
        and the inputs with the ``"input"`` effects appended."""
        params = self._anchor(params, units.t)
        if effects is None:
            return self.R, params, units.x, units.x_times
        x, x_times = self._with_effect_inputs(effects, units.t, units.x, units.x_times)
        typical = population["typical"]
        return self.R, self._effect_scaled(params, effects if typical is None else effects + typical), x, x_times

    def unit_mean(self, mean, effects, population, units):
        """The mean scaled by ``exp`` of the units' output effects."""
        if effects is None or "output" not in self.effects:
            return mean
        return mean * effects[..., self._index("output")].sum(-1)[..., None, None].exp()

    def _sample_effects(self, loc, omega, new_units):
        """The units' effects ``eta`` ``(..., N, k)`` (see the class docstring for the two parameterizations)."""
        if self.parameterization == "centred" and not new_units:
            return pyro.sample("eta", dist.Normal(loc, omega).to_event(1))
        suffix = "_new" if new_units else ""
        z = pyro.sample("eta_z" + suffix, dist.Normal(torch.zeros_like(loc), 1.0).to_event(1))
        return pyro.deterministic("eta" + suffix, loc + omega * z, event_dim=1)

    def _per_state_factor(self, eta, kinds):
        """``exp`` of the summed effects of ``kinds`` (``"rate"``, ``"rate[k]"``...) per hidden component ``k``:
        ``(..., N, hidden_dim)``, or ``None`` when no effect is of these kinds."""
        groups = [[i for i, e in enumerate(self.effects) if e in kinds or e in {f"{kd}[{k}]" for kd in kinds}]
                  for k in range(self.hidden_dim)]
        if not any(groups):
            return None
        zero = eta.new_zeros(eta.shape[:-1])
        return torch.stack([eta[..., g].sum(-1) if g else zero for g in groups], -1).exp()

    def _effect_scaled(self, params, eta):
        """R's weights per unit: the last layer's output row ``k`` scaled by ``exp(eta_rate + eta_rate[k])``
        (i.e. ``exp(.) R_k(h)``; an infusion's rate, added to the last bias by the solve, stays unscaled), and the
        first layer's input column of hidden component ``k`` by ``exp(eta_outflow[k])`` (R reads ``e^eta h_k``)."""
        params = dict(params)
        cols = self._per_state_factor(eta, ("outflow",))
        if cols is not None:
            w = "R.0.weight"
            pad = cols.new_ones(cols.shape[:-1] + (params[w].shape[-1] - self.hidden_dim,))  # inputs x, eta_in
            params[w] = params[w] * torch.cat([cols, pad], -1)[..., None, :]
        rows = self._per_state_factor(eta, ("rate",))
        if rows is not None:
            last = self.R.num_layers - 1
            w, b = f"R.{last}.weight", f"R.{last}.bias"
            params[w], params[b] = params[w] * rows[..., None], params[b] * rows
        return params

    def _with_effect_inputs(self, eta, t, x, x_times):
        """Append the ``"input"`` effects to the inputs of R and Z (constant in time)."""
        if "input" not in self.effects:
            return x, x_times
        e = eta[..., self._index("input")]
        if x is None or self.input_dim == 0:
            times = t[:1] if t.dim() == 1 else t[0, :1]
            return e[..., None, :], times
        x = x.expand(e.shape[:-1] + x.shape[-2:])
        return torch.cat([x, e[..., None, :].expand(x.shape[:-1] + e.shape[-1:])], -1), x_times

    def per_unit_sites(self):
        """Names of the per-unit (plate-local) latent sites."""
        return (self._unit_site, "eta_z_new")

    def __repr__(self):
        return (f"HierarchicalNODEModel(obs_dim={self.obs_dim}, hidden_dim={self.hidden_dim}, effects={self.effects}, "
                f"covariate_dim={self.covariate_dim}, omega={self.omega!r}, parameterization={self.parameterization!r}, "
                f"{self.R!r}, {self.Z!r})")
