"""Mechanistic vector fields with named physical parameters: the known part ``f(h, x; theta)`` of a grey-box NODE.

A :class:`Structure` is a batched function ``f(h, x, theta) -> dh/dt`` with named states, parameters and inputs,
an observation ``y = observe(h, x, theta)`` and, for linear compartment models with bolus doses, an optional
closed-form solution (used instead of an ODE solve when there is no network correction).  Every function works
on tensors with arbitrary leading batch dims (weight particles, predictive draws, units): ``h`` is
``batch + (H,)``, ``x`` is ``batch + (D,)`` or ``None``, and each ``theta[name]`` broadcasts against ``batch``.

The library (:data:`STRUCTURES`, :func:`get_structure`):

* ``one_compartment_iv`` (states: central; CL, V), ``one_compartment_oral`` (central, depot; CL, V, ka),
* ``two_compartment_iv`` (central, peripheral; CL, V, Q, V2), ``two_compartment_oral`` (central, depot,
  peripheral; CL, V, Q, V2, ka),
* ``michaelis_menten_iv`` / ``michaelis_menten_oral`` (saturable elimination ``Vmax C / (Km + C)``),
* ``maxwell`` (stress of a spring and dashpot in series under a strain history), ``zener`` (a standard linear
  solid: a spring in parallel with a Maxwell arm), both with inputs ``(strain, strain_rate)``,
* ``arrhenius_chain`` (mass action ``A -> B -> C`` with Arrhenius rates of a temperature input).

Pharmacokinetic states are amounts (dose units), the central compartment comes first and is observed as the
concentration ``A_central / V``; doses go into a state by index (a depot dose into state 1).  Their ``volumes``
name each state's volume (a depot's is the central ``V``: the concentration its content would give once absorbed).

Your own structure: write ``f`` as a Python function of ``(h, x, theta)`` and wrap it, e.g. logistic growth::

    >>> import torch
    >>> def logistic(h, x, theta):
    ...     return (theta["r"] * h[..., 0] * (1 - h[..., 0] / theta["K"]))[..., None]
    >>> s = Structure("logistic", logistic, states=("N",), params={"r": 0.5, "K": 10.0})
    >>> s.field(torch.ones(4, 1), None, s.typical_values(torch.ones(1))).shape
    torch.Size([4, 1])
"""
import inspect
import math

import torch

__all__ = ["STRUCTURES", "Structure", "arrhenius_chain", "get_structure"]


def _first_states(h, theta, obs_dim):
    return h[..., :obs_dim]


class Structure:
    """A mechanistic vector field with named parameters.

    :param str name: the structure's name.
    :param callable field: ``field(h, x, theta) -> dh/dt``: ``h`` ``batch + (H,)``, ``x`` ``batch + (D,)`` or
        ``None``, ``theta`` a dict ``name -> tensor`` broadcasting against ``batch``; returns ``batch + (H,)``.
    :param tuple states: names of the ``H`` state components.
    :param dict params: parameter name -> typical value (positive: parameters are log-normal), the prior median of
        the typical parameter.
    :param callable observe: ``observe(h, x, theta) -> y`` ``batch + (obs_dim,)``; default: the first
        ``obs_dim`` states.
    :param int obs_dim: number of observed outputs.
    :param tuple inputs: names of the inputs ``x`` the field reads (``()``: autonomous).
    :param callable solution: optional closed form ``solution(t, doses, theta) -> h`` for bolus doses and a zero
        initial state: ``t`` ``(N, T)``, :class:`~pyro_node_uq.distributions.DoseSchedule` of ``N`` units, theta
        ``batch + (N,)``, returning ``batch + (N, T, H)``.  One with a keyword ``infusions`` also solves
        infusions: ``(rate, end)`` ``batch + (N, K)`` of every dose (of
        :meth:`~pyro_node_uq.distributions.DoseSchedule.resolved`; rate 0 at boluses), used with modelled rates
        or durations (:attr:`solves_infusions`).
    :param int dose_state: the state oral doses go into by default (``None``: no default).
    :param tuple volumes: for amounts in compartments, the name of each state's volume parameter (``None``: no
        volumes); a grey-box correction may then read the concentration-like states ``h_j / V_j`` of each unit.
    """

    def __init__(self, name, field, states, params, observe=None, obs_dim=1, inputs=(), solution=None,
                 dose_state=None, volumes=None):
        if not callable(field):
            raise TypeError(f"Structure {name!r}: field must be a function (h, x, theta) -> dh/dt, got "
                            f"{type(field).__name__}")
        if not states or not params:
            raise ValueError(f"Structure {name!r}: give at least one state and one parameter")
        bad = {k: v for k, v in params.items() if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"Structure {name!r}: parameter values must be positive numbers (they are the "
                             f"medians of log-normal parameters), got {bad}")
        if not 1 <= obs_dim <= len(states) and observe is None:
            raise ValueError(f"Structure {name!r}: obs_dim must be in [1, {len(states)}] (observing states)")
        self.name, self.field, self.states = name, field, tuple(states)
        self.params = dict(params)
        self.observe_fn = observe
        self.obs_dim, self.inputs, self.solution, self.dose_state = int(obs_dim), tuple(inputs), solution, dose_state
        if volumes is not None:
            volumes = tuple(volumes)
            if len(volumes) != len(self.states) or any(v not in self.params for v in volumes):
                raise ValueError(f"Structure {name!r}: volumes must name one parameter of {tuple(self.params)} per "
                                 f"state {self.states}, got {volumes}")
        self.volumes = volumes

    @property
    def solves_infusions(self):
        """Whether the closed form ``solution`` takes infusions (a keyword ``infusions``)."""
        return self.solution is not None and "infusions" in inspect.signature(self.solution).parameters

    @property
    def param_names(self):
        return tuple(self.params)

    @property
    def hidden_dim(self):
        return len(self.states)

    def observe(self, h, x, theta):
        """The noise-free observation of states ``h``: ``batch + (obs_dim,)``."""
        if self.observe_fn is None:
            return _first_states(h, theta, self.obs_dim)
        return self.observe_fn(h, x, theta)

    def rates(self, values=None, state=1e-6):
        """Characteristic rates (1/time) of the states, ``(H,)`` float64: ``|df_j/dh_j|`` at the parameters
        ``values`` (default: the typical ones), the state ``state`` in every component and zero inputs; where that
        is zero (a state nothing removes), the row's largest ``|df_j/dh_k|``; where the whole row is zero, 1.
        They set the size of a grey-box correction relative to the mechanism.

        :param dict values: parameter name -> value (missing names: the typical values).
        :param float state: the state at which the Jacobian is taken (small: near the drug-free state, away from
            a kink at exactly zero such as a clamped concentration).
        """
        like = torch.zeros((), dtype=torch.float64)
        theta = {k: like.new_tensor(float(v)) for k, v in {**self.params, **(values or {})}.items()}
        x = like.new_zeros(len(self.inputs)) if self.inputs else None
        h = like.new_full((self.hidden_dim,), float(state))
        jac = torch.autograd.functional.jacobian(lambda z: self.field(z, x, theta), h).abs()
        if not bool(torch.isfinite(jac).all()):
            raise ValueError(f"Structure {self.name!r}: the field's Jacobian at the typical parameters is not "
                             f"finite ({jac.tolist()}); give the correction's output scale explicitly")
        diag, row = jac.diagonal(), jac.max(-1).values
        rates = torch.where(diag > 0, diag, row)
        return torch.where(rates > 0, rates, torch.ones_like(rates))

    def typical_values(self, like):
        """The parameters' typical values as a dict of scalar tensors (dtype and device of ``like``)."""
        return {k: like.new_tensor(float(v)) for k, v in self.params.items()}

    def __repr__(self):
        return f"Structure({self.name!r}, states={self.states}, params={self.param_names})"


# ---------------------------------------------------------------------------------------------- pharmacokinetics
def _concentration(h, x, theta):
    return h[..., :1] / theta["V"][..., None]


def _one_iv(h, x, theta):
    return -(theta["CL"] / theta["V"])[..., None] * h


def _one_oral(h, x, theta):
    ka, ke = theta["ka"], theta["CL"] / theta["V"]
    absorbed = ka * h[..., 1]
    return torch.stack([absorbed - ke * h[..., 0], -absorbed], -1)


def _two_iv(h, x, theta):
    k10, k12, k21 = theta["CL"] / theta["V"], theta["Q"] / theta["V"], theta["Q"] / theta["V2"]
    c, p = h[..., 0], h[..., 1]
    return torch.stack([-(k10 + k12) * c + k21 * p, k12 * c - k21 * p], -1)


def _two_oral(h, x, theta):
    k10, k12, k21, ka = theta["CL"] / theta["V"], theta["Q"] / theta["V"], theta["Q"] / theta["V2"], theta["ka"]
    c, d, p = h[..., 0], h[..., 1], h[..., 2]
    return torch.stack([ka * d - (k10 + k12) * c + k21 * p, -ka * d, k12 * c - k21 * p], -1)


def _mm_elimination(h, theta):
    conc = h[..., 0] / theta["V"]
    return theta["Vmax"] * conc / (theta["Km"] + conc.clamp(min=0))


def _mm_iv(h, x, theta):
    return -_mm_elimination(h, theta)[..., None]


def _mm_oral(h, x, theta):
    absorbed = theta["ka"] * h[..., 1]
    return torch.stack([absorbed - _mm_elimination(h, theta), -absorbed], -1)


def _lags(t, doses, theta):
    """Per unit, observation and dose: the time since the dose (0 before it), whether it was given, the amount
    and the dosed state: ``(N, T, K)`` each; theta's entries get two trailing dims to broadcast."""
    if t.dim() == 1:
        t = t.expand(doses.num_units, -1)
    lag = t[..., :, None] - doses.time[:, None, :]
    given = (lag >= 0) & doses.mask[:, None, :] & (doses.rate == 0)[:, None, :]
    amount = torch.where(given, doses.amount[:, None, :], 0.0)
    return lag.clamp(min=0), amount, doses.compartment[:, None, :].expand(lag.shape), {
        k: v[..., None, None] for k, v in theta.items()}


def _bateman(ka, ke, lag):
    """``(exp(-ke s) - exp(-ka s)) / (ka - ke)``, by its series ``s exp(-ke s) (1 - d / 2)`` where ``d = (ka - ke)
    s`` is tiny (the difference quotient would cancel), and as the plain quotient elsewhere (never overflows)."""
    delta = ka - ke
    small = (delta * lag).abs() < 1e-6
    quotient = (torch.exp(-ke * lag) - torch.exp(-ka * lag)) / torch.where(small, torch.ones_like(delta), delta)
    return torch.where(small, lag * torch.exp(-ke * lag) * (1 - delta * lag / 2), quotient)


def _infusion_lags(t, doses, infusions):
    """Per unit, observation and dose (``batch + (N, T, K)``): the time since an infusion ended (0 before), the
    time it has run so far (0 before it starts) and its rate (0 for boluses and padding); ``infusions`` is
    ``(rate, end)`` of :meth:`~pyro_node_uq.distributions.DoseSchedule.resolved`."""
    rate, end = infusions
    if t.dim() == 1:
        t = t.expand(doses.num_units, -1)
    t = t[..., :, None]
    since_end = (t - end[..., None, :]).clamp(min=0)
    infused = (torch.minimum(t, end[..., None, :]) - doses.time[:, None, :]).clamp(min=0)
    on = doses.mask & (rate > 0)
    return since_end, infused, torch.where(on, rate, torch.zeros_like(rate))[..., None, :]


def _infused(k, since_end, infused):
    """``int_{since_end}^{since_end + infused} exp(-k s) ds``: what a unit-rate infusion leaves of a state
    emptied at rate ``k`` (``expm1``: no cancellation for a short infusion)."""
    return torch.exp(-k * since_end) * -torch.expm1(-k * infused) / k


def _infused_bateman(ka, ke, since_end, infused):
    """``int_a^b bateman(ka, ke, s) ds`` with ``a = since_end``, ``b = a + infused``: what a unit-rate infusion
    into a depot emptied at ``ka`` leaves in a state emptied at ``ke`` (divided by ``ka``); where ``(ka - ke) b``
    is tiny, by the integral at the mean rate ``(ka + ke) / 2`` (its error is of order ``((ka - ke) b)^2``)."""
    delta, b = ka - ke, since_end + infused
    small = (delta * b).abs() < 1e-4
    quotient = (_infused(ke, since_end, infused) - _infused(ka, since_end, infused)) / torch.where(
        small, torch.ones_like(delta), delta)
    k = (ka + ke) / 2
    mean_rate = (torch.exp(-k * since_end) * (1 + k * since_end) - torch.exp(-k * b) * (1 + k * b)) / k ** 2
    return torch.where(small, mean_rate, quotient)


def _one_iv_solution(t, doses, theta, infusions=None):
    lag, amount, cmt, th = _lags(t, doses, theta)
    ke = (th["CL"] / th["V"])
    central = (amount * (cmt == 0) * torch.exp(-ke * lag)).sum(-1)
    if infusions is not None:
        since_end, infused, rate = _infusion_lags(t, doses, infusions)
        central = central + (rate * (cmt == 0) * _infused(ke, since_end, infused)).sum(-1)
    return central[..., None]


def _one_oral_solution(t, doses, theta, infusions=None):
    lag, amount, cmt, th = _lags(t, doses, theta)
    ka, ke = th["ka"], th["CL"] / th["V"]
    into_central, into_depot = amount * (cmt == 0), amount * (cmt == 1)
    depot = (into_depot * torch.exp(-ka * lag)).sum(-1)
    central = (into_central * torch.exp(-ke * lag) + into_depot * ka * _bateman(ka, ke, lag)).sum(-1)
    if infusions is not None:
        since_end, infused, rate = _infusion_lags(t, doses, infusions)
        to_central, to_depot = rate * (cmt == 0), rate * (cmt == 1)
        depot = depot + (to_depot * _infused(ka, since_end, infused)).sum(-1)
        central = central + (to_central * _infused(ke, since_end, infused)
                             + to_depot * ka * _infused_bateman(ka, ke, since_end, infused)).sum(-1)
    return torch.stack([central, depot], -1)


# ------------------------------------------------------------------------------------ materials and chemistry
def _maxwell(h, x, theta):
    """A spring (modulus E) and a dashpot (viscosity eta) in series: d sigma/dt = E d eps/dt - (E / eta) sigma."""
    return (theta["E"] * x[..., 1] - theta["E"] / theta["eta"] * h[..., 0])[..., None]


def _zener(h, x, theta):
    """The viscous strain of the Maxwell arm relaxes towards the strain: d eps_v/dt = (E1 / eta) (eps - eps_v)."""
    return (theta["E1"] / theta["eta"] * (x[..., 0] - h[..., 0]))[..., None]


def _zener_stress(h, x, theta):
    eps = x[..., 0]
    return (theta["E_inf"] * eps + theta["E1"] * (eps - h[..., 0]))[..., None]


R_GAS = 8.314e-3  # kJ / (mol K)


def arrhenius_chain(T_ref=350.0, T_offset=350.0, T_scale=25.0, k1=0.5, k2=0.25, E1=60.0, E2=90.0):
    """Mass action ``A -> B -> C`` with Arrhenius rates ``k_i(T) = k_i exp(-(E_i / R) (1/T - 1/T_ref))``.

    States ``(A, C, B)`` (the observed ``A`` and ``C`` first), concentrations observed; the input is the scaled
    temperature ``x = (T - T_offset) / T_scale``.

    :param float T_ref: reference temperature of the rates (K).
    :param float T_offset, T_scale: how the input maps to the temperature.
    :param float k1, k2: typical rates at ``T_ref`` (1/time); ``E1``, ``E2``: activation energies (kJ/mol).
    :rtype: Structure
    """

    def field(h, x, theta):
        T = T_offset + T_scale * x[..., 0]
        shift = 1.0 / T - 1.0 / T_ref
        r1 = theta["k1"] * torch.exp(-theta["E1"] / R_GAS * shift) * h[..., 0]
        r2 = theta["k2"] * torch.exp(-theta["E2"] / R_GAS * shift) * h[..., 2]
        return torch.stack([-r1, r2, r1 - r2], -1)

    return Structure("arrhenius_chain", field, states=("A", "C", "B"),
                     params={"k1": k1, "k2": k2, "E1": E1, "E2": E2}, obs_dim=2, inputs=("temperature",))


STRUCTURES = {
    "one_compartment_iv": lambda: Structure(
        "one_compartment_iv", _one_iv, ("central",), {"CL": 1.0, "V": 10.0}, _concentration,
        solution=_one_iv_solution, dose_state=0, volumes=("V",)),
    "one_compartment_oral": lambda: Structure(
        "one_compartment_oral", _one_oral, ("central", "depot"), {"CL": 1.0, "V": 10.0, "ka": 1.0},
        _concentration, solution=_one_oral_solution, dose_state=1, volumes=("V", "V")),
    "two_compartment_iv": lambda: Structure(
        "two_compartment_iv", _two_iv, ("central", "peripheral"), {"CL": 1.0, "V": 10.0, "Q": 1.0, "V2": 10.0},
        _concentration, dose_state=0, volumes=("V", "V2")),
    "two_compartment_oral": lambda: Structure(
        "two_compartment_oral", _two_oral, ("central", "depot", "peripheral"),
        {"CL": 1.0, "V": 10.0, "Q": 1.0, "V2": 10.0, "ka": 1.0}, _concentration, dose_state=1,
        volumes=("V", "V", "V2")),
    "michaelis_menten_iv": lambda: Structure(
        "michaelis_menten_iv", _mm_iv, ("central",), {"Vmax": 10.0, "Km": 1.0, "V": 10.0}, _concentration,
        dose_state=0, volumes=("V",)),
    "michaelis_menten_oral": lambda: Structure(
        "michaelis_menten_oral", _mm_oral, ("central", "depot"), {"Vmax": 10.0, "Km": 1.0, "V": 10.0, "ka": 1.0},
        _concentration, dose_state=1, volumes=("V", "V")),
    "maxwell": lambda: Structure("maxwell", _maxwell, ("stress",), {"E": 1.0, "eta": 1.0},
                                 inputs=("strain", "strain_rate")),
    "zener": lambda: Structure("zener", _zener, ("viscous_strain",), {"E_inf": 1.0, "E1": 1.0, "eta": 1.0},
                               _zener_stress, inputs=("strain", "strain_rate")),
    "arrhenius_chain": arrhenius_chain,
}


def get_structure(structure, **options):
    """A :class:`Structure` from its name in :data:`STRUCTURES` (``options`` go to its constructor, e.g.
    :func:`arrhenius_chain`'s), or ``structure`` itself when it is one already.

    :raises ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(structure, Structure):
        return structure
    if structure not in STRUCTURES:
        raise ValueError(f"structure: expected a Structure or one of {sorted(STRUCTURES)}, got {structure!r}")
    return STRUCTURES[structure](**options)
