"""A neural mixed-effects NODE: population weights w, per-unit random effects eta_i ~ Normal(B c_i, Omega), doses."""
import math
import re

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from ..distributions import NODEObservation, solve_node
from ..nn import BatchedMLP, sample_params
from ..utils.tensors import broadcast_shapes
from ..validation import check_trajectory_data
from .node import NODEModel, _left_of_trajectories, init_to_glorot

__all__ = ["EFFECTS", "PARAMETERIZATIONS", "HierarchicalNODEModel"]

EFFECTS = ("rate", "output", "input", "rate[k]", "outflow[k]")
_PER_STATE = re.compile(r"(rate|outflow)\[(\d+)\]$")
PARAMETERIZATIONS = ("noncentred", "centred")


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
    Other options (error models, solver, noise scale) are :class:`NODEModel`'s; the solve is
    :func:`~pyro_node_uq.distributions.solve_node` and the likelihood
    :class:`~pyro_node_uq.distributions.NODEObservation`.

    :param tuple effects: where each random-effect component enters, from :data:`EFFECTS` (``"rate[k]"`` and
        ``"outflow[k]"`` with ``k`` a hidden component, ``0 <= k < hidden_dim``); ``()`` is the population-only
        model (no random effects; doses and covariates-free).
    :param int covariate_dim: number of covariates ``C``.
    :param covariate_loc, covariate_scale: standardisation of the covariates (default 0 and 1).
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
                 parameterization="noncentred", equilibrium=None, typical_rate=None, **kwargs):
        super().__init__(obs_dim, input_dim, **kwargs)
        bad = isinstance(effects, str) or [e for e in effects if e not in EFFECTS[:3] and not (
            _PER_STATE.match(e) and int(_PER_STATE.match(e).group(2)) < self.hidden_dim)]
        if bad:
            raise ValueError(f"effects: expected a tuple of {EFFECTS} with 0 <= k < hidden_dim={self.hidden_dim} "
                             f"(empty: a population-only model), got {effects!r}")
        if covariate_dim and not effects:
            raise ValueError("covariate_dim: covariates shift the random effects' mean; give effects as well")
        if omega not in ("learned", "latent"):
            raise ValueError(f"omega must be 'learned' or 'latent', got {omega!r}")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization: expected one of {PARAMETERIZATIONS}, got {parameterization!r}")
        self.parameterization = parameterization
        self.effects, self.covariate_dim = tuple(effects), int(covariate_dim)
        self.covariate_loc, self.covariate_scale = covariate_loc, covariate_scale
        self.omega, self.omega_init, self.omega_prior = omega, float(omega_init), float(omega_prior)
        self.dose_scale = float(dose_scale)
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

    def _eta_loc(self, covariates, like):
        if not self.covariate_dim:
            return like.new_zeros(self.eta_dim)
        if covariates is None or covariates.shape[-1] != self.covariate_dim:
            raise ValueError(f"covariates: the model expects ({self.covariate_dim},) covariates per unit, got "
                             f"{None if covariates is None else tuple(covariates.shape)}")
        c = covariates.to(like)
        loc = 0.0 if self.covariate_loc is None else torch.as_tensor(self.covariate_loc).to(like)
        scale = 1.0 if self.covariate_scale is None else torch.as_tensor(self.covariate_scale).to(like)
        prior = dist.Normal(like.new_zeros(self.eta_dim, self.covariate_dim), 1.0).to_event(2)
        beta = _left_of_trajectories(pyro.sample("beta", prior), 2)
        return (beta @ ((c - loc) / scale)[..., None]).squeeze(-1)

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

    def __call__(self, t, x=None, y=None, mask=None, x_times=None, num_trajectories=None, *, doses=None,
                 covariates=None, new_units=False, censored=None, t_mask=None, t0=None):
        """Run the model on units sharing the (union) observation grid ``t`` (or each with its own times).

        :param torch.Tensor t: observation times ``(T,)``, or ``(N, T)`` per unit with ``t_mask``.
        :param torch.Tensor x: inputs ``(N, T, input_dim)`` (or at ``x_times``), or ``None``.
        :param torch.Tensor y: observations ``(N, T, obs_dim)``, or ``None`` to sample them.
        :param torch.Tensor mask: boolean ``(N, T)``: each unit's observed entries.
        :param torch.Tensor x_times: sample times of ``x`` when they differ from ``t``.
        :param int num_trajectories: ``N`` when no other argument gives it.
        :param DoseSchedule doses: the units' bolus and infusion events.
        :param torch.Tensor covariates: ``(N, covariate_dim)``.
        :param bool new_units: draw the random effects of unfitted units (sites ``"eta_z_new"``, ``"eta_new"``).
        :param torch.Tensor censored: boolean ``(N, T)``: observations below the quantification limit.
        :param torch.Tensor t_mask: real entries of per-unit times.
        :param float t0: start of the solve.
        """
        y, mask = check_trajectory_data(t, x, y, mask, self.input_dim, self.obs_dim, x_times)
        units = (x, y, mask, covariates, t if t.dim() == 2 else None, None if doses is None else doses.time)
        N = next((v.shape[0] for v in units if v is not None), num_trajectories)
        if N is None:
            raise ValueError("num_trajectories: give x, y, mask or num_trajectories to set the number of units")
        shapes = self.weight_shapes()
        params = sample_params(shapes, self.prior_scale, dtype=t.dtype, device=t.device)
        params = self._anchor({k: _left_of_trajectories(v, len(shapes[k])) for k, v in params.items()}, t)
        omega = self._omega(t) if self.eta_dim else None
        loc = self._eta_loc(covariates, t) if self.eta_dim else None
        typical = self._typical_shift(t)
        scale = self._noise_scale(t)
        prop = None if self.prop_scale is None else self._noise_scale(t, self.prop_scale, "sigma_prop")
        h0 = self._initial_state(params, x, t)
        if doses is not None and self.dose_scale != 1.0:
            doses = doses._replace(amount=doses.amount * self.dose_scale, rate=doses.rate * self.dose_scale)
        with pyro.plate("trajectories", N, dim=-1):
            eta = t.new_zeros(N, 0)
            if self.eta_dim:
                eta = self._sample_effects(loc, omega, new_units)
            x, x_times = self._with_effect_inputs(eta, t, x, x_times)
            rate_eta = eta if typical is None else eta + typical
            sol = solve_node(self.R, self.Z, self._effect_scaled(params, rate_eta), t, x, h0, t_mask=t_mask,
                             x_times=x_times, doses=doses, t0=t0, obs_dim=self.obs_dim,
                             interpolation=self.interpolation, solver=self.solver, on_divergence=self.on_divergence)
            mean = sol.mean
            if "output" in self.effects:
                mean = mean * eta[..., self._index("output")].sum(-1)[..., None, None].exp()
            batch = broadcast_shapes(mean.shape[:-2], (N,))
            mean, hidden = mean.expand(batch + mean.shape[-2:]), sol.hidden.expand(batch + sol.hidden.shape[-2:])
            if self.record:
                pyro.deterministic("hidden", hidden, event_dim=2)
                pyro.deterministic("y_mean", mean, event_dim=2)
            if censored is not None and censored.dim() == 2:
                censored = censored[..., None]
            m = None if mask is None else (mask if mask.dim() == 3 else mask[..., None])
            fn = NODEObservation(mean, scale, error_model=self.error_model, noise=self.noise, df=self.df,
                                 prop_scale=prop, mask=m, censored=censored, diverged=sol.diverged)
            return pyro.sample("obs", fn, obs=y)

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
