"""A neural mixed-effects NODE: population weights w, per-unit random effects eta_i ~ Normal(B c_i, Omega), doses."""
import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from ..distributions import ODESolver
from ..distributions.interpolation import Interpolator
from ..nn import BatchedMLP, sample_params
from ..validation import check_trajectory_data
from .event_solve import check_diverged, solve_events
from .node import NODEModel, _left_of_trajectories

__all__ = ["HierarchicalNODEModel", "EFFECTS"]

EFFECTS = ("rate", "output", "input")


class HierarchicalNODEModel(NODEModel):
    """Neural NLME: one NODE per unit i, sharing population weights, with a random effect ``eta_i`` per unit.

    .. math::

        dh_i/dt = e^{\\eta_{i,r}} R(h_i, x_i(t), \\eta_{i,in}; w) + u_i(t),\\quad
        y_i = e^{\\eta_{i,o}} Z(h_i, x_i(t), \\eta_{i,in}; w) + \\epsilon,\\quad
        \\eta_i \\sim \\mathcal N(B c_i, \\mathrm{diag}(\\omega^2))

    where ``effects`` says where each component of eta enters: ``"rate"`` scales the vector field (a clearance-
    type effect: the unit's clock runs faster), ``"output"`` scales the observation (a volume-type effect),
    ``"input"`` is an extra input of R (and Z). Doses jump the state (boluses) or add the infusion rate
    ``u_i(t)`` (see :func:`~pyro_node_uq.models.event_solve.solve_events`). Covariates ``c_i`` (standardised
    with ``covariate_loc`` / ``covariate_scale``) shift the mean of eta through the latent ``beta`` (``B``).
    The per-unit latent is ``"eta_z"`` ~ Normal(0, I) inside the plate ``"trajectories"`` (``dim=-1``), non-centred:
    ``eta = B c + omega * eta_z`` is recorded as the deterministic site ``"eta"`` (so MAP and mean-field guides do
    not meet the funnel of a centred ``eta``); units marked ``new_units`` use ``"eta_z_new"`` / ``"eta_new"``
    (drawn from the population, not from the fitted units' posterior). ``omega`` is a point estimate
    (``omega="learned"``, a ``pyro.param``) or a latent, with a log-normal prior either way.
    Other options are :class:`NODEModel`'s; ``observe`` names the hidden components observed when ``Z_hidden``
    is ``None``.

    :param tuple effects: where each random-effect component enters, from :data:`EFFECTS`; ``()`` is the
        population-only model (no random effects; doses and covariates-free).
    :param int covariate_dim: number of covariates ``C``.
    :param covariate_loc, covariate_scale: standardisation of the covariates (default 0 and 1).
    :param omega: ``"learned"`` or ``"latent"``.
    :param float omega_init: median of the ``LogNormal(log omega_init, omega_prior)`` prior of omega (the
        initial value of a learned omega, which is penalised by this prior so MAP cannot send it to 0 or infinity).
    :param float omega_prior: log-scale of that prior.
    :param tuple observe: hidden components observed when ``Z_hidden`` is ``None`` (default the first).
    :param float dose_scale: doses enter the state multiplied by this.

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
                 covariate_scale=None, omega="learned", omega_init=0.3, omega_prior=0.5, observe=None,
                 dose_scale=1.0, solver=None, **kwargs):
        solver = ODESolver.coerce(solver or dict(method="rk4", step_size=0.25, 
                                                 step_check=False))
        super().__init__(obs_dim, input_dim, solver=solver, **kwargs)
        bad = [e for e in effects if e not in EFFECTS]
        if bad or isinstance(effects, str):
            raise ValueError(f"effects: expected a tuple of {EFFECTS} (empty: a population-only model), got {effects!r}")
        if covariate_dim and not effects:
            raise ValueError("covariate_dim: covariates shift the random effects' mean; give effects as well")
        if omega not in ("learned", "latent"):
            raise ValueError(f"omega must be 'learned' or 'latent', got {omega!r}")
        self.effects, self.covariate_dim = tuple(effects), int(covariate_dim)
        self.covariate_loc, self.covariate_scale = covariate_loc, covariate_scale
        self.omega, self.omega_init, self.omega_prior = omega, float(omega_init), float(omega_prior)
        self.dose_scale = float(dose_scale)
        self.observe = tuple(range(obs_dim)) if observe is None else tuple(observe)
        if len(self.observe) != obs_dim or not all(0 <= i < self.hidden_dim for i in self.observe):
            raise ValueError(f"observe: expected {obs_dim} hidden components in [0, {self.hidden_dim}), got {observe!r}")
        n_in, act = self.effects.count("input"), self.R.activation
        self.R = BatchedMLP("R", (self.hidden_dim + input_dim + n_in, *self.R.sizes[1:]), act)
        if self.Z is not None:
            self.Z = BatchedMLP("Z", (self.hidden_dim + input_dim + n_in, *self.Z.sizes[1:]), act)
        if self.init == "input":
            raise ValueError("init: 'input' is not supported by HierarchicalNODEModel (doses set the state)")

    @property
    def eta_dim(self):
        return len(self.effects)

    def _index(self, kind):
        return [i for i, e in enumerate(self.effects) if e == kind]

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
    def __call__(self, t, x=None, y=None, mask=None, doses=None, covariates=None, new_units=False,
                 num_trajectories=None, x_times=None):
        """Run the model on units sharing the (union) observation grid ``t``.

        :param torch.Tensor t: strictly increasing observation times ``(T,)``.
        :param torch.Tensor x: inputs ``(N, T, input_dim)`` (or at ``x_times``), or ``None``.
        :param torch.Tensor y: observations ``(N, T, obs_dim)``, or ``None`` to sample them.
        :param torch.Tensor mask: boolean ``(N, T)``: each unit's observed entries.
        :param doses: :class:`~pyro_node_uq.data.units.Doses` of the units, or ``None``.
        :param torch.Tensor covariates: ``(N, covariate_dim)``.
        :param bool new_units: draw the random effects of unfitted units (site ``"eta_new"``).
        :param int num_trajectories: ``N`` when neither ``x``, ``y`` nor ``mask`` gives it.
        """
        y, mask = check_trajectory_data(t, x, y, mask, self.input_dim, self.obs_dim, x_times)
        N = next((v.shape[0] for v in (x, y, mask, covariates) if v is not None), num_trajectories)
        if N is None:
            raise ValueError("num_trajectories: give x, y, mask or num_trajectories to set the number of units")
        if doses is not None and len(doses) != N:
            raise ValueError(f"doses: expected schedules of {N} units, got {len(doses)}")
        shapes = self.weight_shapes()
        params = sample_params(shapes, self.prior_scale, dtype=t.dtype, device=t.device)
        params = {k: _left_of_trajectories(v, len(shapes[k])) for k, v in params.items()}
        omega = self._omega(t) if self.eta_dim else None
        loc = self._eta_loc(covariates, t) if self.eta_dim else None
        scale = self._noise_scale(t)
        h0 = self._initial_state(params, x, t)
        with pyro.plate("trajectories", N, dim=-1):
            suffix = "_new" if new_units else ""
            if not self.eta_dim:
                eta = t.new_zeros(N, 0)
            else:
                z = pyro.sample("eta_z" + suffix, dist.Normal(torch.zeros_like(loc), 1.0).expand(
                    loc.shape[:-1] + (self.eta_dim,)).to_event(1))
                eta = pyro.deterministic("eta" + suffix, loc + omega * z, event_dim=1)
            hs = self._solve(params, eta, t, x, x_times, h0, doses)
            mean = self._observe(params, eta, hs, t, x, x_times)
            bad = check_diverged(hs, self.solver, self.on_divergence)
            hs, mean = hs.masked_fill(bad[..., None, None], 0.0), mean.masked_fill(bad[..., None, None], 0.0)
            if self.record:
                pyro.deterministic("hidden", hs, event_dim=2)
                pyro.deterministic("y_mean", mean, event_dim=2)
            noise = dist.Normal(mean, scale) if self.noise == "normal" else dist.StudentT(self.df, mean, scale)
            m = None if mask is None else (mask if mask.dim() == 3 else mask[..., None]).expand(mean.shape[-3:])
            if bad.any():
                pyro.factor("diverged", torch.where(bad, -torch.inf, 0.0))
            return pyro.sample("obs", noise.mask(m if m is not None else True).to_event(2), obs=y)

    def _inputs(self, eta, x_part):
        parts = [p for p in (x_part, eta[..., self._index("input")] if "input" in self.effects else None)
                 if p is not None]
        return parts

    def _solve(self, params, eta, t, x, x_times, h0, doses):
        shapes = self.weight_shapes()
        batch = torch.broadcast_shapes(eta.shape[:-1], *(v.shape[: v.dim() - len(shapes[k])] for k, v in params.items()))
        rate = eta[..., self._index("rate")].sum(-1, keepdim=True).exp() if "rate" in self.effects else None
        interp = Interpolator(t if x_times is None else x_times, x, self.interpolation) if (
            x is not None and self.input_dim > 0) else None

        def field(s, h):
            extra = self._inputs(eta, None if interp is None else interp(s).expand(h.shape[:-1] + (self.input_dim,)))
            extra = [e.expand(h.shape[:-1] + e.shape[-1:]) for e in extra]
            dh = self.R(params, torch.cat([h, *extra], -1) if extra else h)
            return dh if rate is None else rate * dh

        if doses is not None and self.dose_scale != 1.0:
            doses = type(doses)(doses.times, doses.amounts * self.dose_scale, doses.cmt, doses.rates * self.dose_scale,
                                doses.mask)
        return solve_events(field, h0, t, doses, self.solver, batch)

    def _observe(self, params, eta, hs, t, x, x_times):
        if self.Z is None:
            mean = hs[..., list(self.observe)]
        else:
            extra = []
            if x is not None and self.input_dim > 0:
                xs = Interpolator(t if x_times is None else x_times, x, self.interpolation).at_grid(t)
                extra.append(xs.expand(hs.shape[:-1] + xs.shape[-1:]))
            if "input" in self.effects:
                e = eta[..., self._index("input")][..., None, :]
                extra.append(e.expand(hs.shape[:-1] + e.shape[-1:]))
            z_in = torch.cat([hs, *extra], -1).movedim(-2, 0)
            mean = self.Z(params, z_in).movedim(0, -2)
        if "output" in self.effects:
            mean = mean * eta[..., self._index("output")].sum(-1)[..., None, None].exp()
        return mean

    def per_unit_sites(self):
        """Names of the per-unit (plate-local) latent sites."""
        return ("eta_z", "eta_z_new")

    def __repr__(self):
        return (f"HierarchicalNODEModel(obs_dim={self.obs_dim}, hidden_dim={self.hidden_dim}, effects={self.effects}, "
                f"covariate_dim={self.covariate_dim}, omega={self.omega!r}, {self.R!r}, {self.Z!r})")
