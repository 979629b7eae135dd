"""Pharmacokinetic problems on dose events: a synthetic repeated-bolus study with known per-subject effects, and
the theophylline study read through :func:`~pyro_node_uq.data.read_events`."""
import pandas as pd
import torch

from ..distributions.doses import DoseSchedule
from .events import read_events
from .real import read_csv
from .units import Units, refine_grid, units_problem

__all__ = ["pk_closed_form", "pk_population_predictive", "pk_repeated", "theophylline_events"]

K_ELIM, OMEGA = 0.1, (0.3, 0.2)


def pk_closed_form(t, doses, k, scale):
    """One-compartment IV-bolus concentration ``scale_i sum_{d: t_d <= t} amt_d exp(-k_i (t - t_d))`` ``(N, T)``
    (a sample at a dose time sees that dose, as in :func:`~pyro_node_uq.distributions.solve_node`).

    :param torch.Tensor t: times ``(T,)``.
    :param DoseSchedule doses: bolus schedules of ``N`` units.
    :param torch.Tensor k: elimination rates ``(N,)``.
    :param torch.Tensor scale: concentration per unit amount ``(N,)`` (``1 / V_i``).

    Example::

        >>> d = DoseSchedule.from_lists([[0.0, 1.0]], [[1.0, 1.0]])
        >>> [round(v, 4) for v in pk_closed_form(torch.tensor([1.0, 2.0]), d, torch.tensor([1.0]),
        ...                                       torch.tensor([1.0]))[0].tolist()]
        [1.3679, 0.5032]
    """
    lag = t[None, :, None] - doses.time[:, None, :]  # (N, T, D)
    given = (lag >= 0) & doses.mask[:, None, :]
    terms = doses.amount[:, None, :] * torch.exp(-k[:, None, None] * lag.clamp(min=0))
    return scale[:, None] * torch.where(given, terms, torch.zeros_like(terms)).sum(-1)


def pk_population_predictive(split, noise=0.1, num_samples=1000, seed=0):
    """The predictive of ``pk_repeated``'s own data-generating population for units of ``split`` seen as new
    units (each unit's effects drawn afresh from ``Normal(0, diag(OMEGA^2))``, the typical rate ``K_ELIM``, its
    own doses): the reference a fitted model's new-unit predictions are judged against.  Scored on a split's
    few held-out units, it shows how far their coverage is from the nominal level by chance alone (10 units
    share each draw of effects; on ``pk_repeated``'s seed 0 the true population's 90% bands cover 0.65 of the
    new units' observations, on seed 1 0.99).

    :param Units split: units with doses (a split of :func:`pk_repeated`).
    :param float noise: the observation noise std the data were made with.
    :param int num_samples: draws.
    :param int seed: seed of the draws.
    :returns: dict ``"obs"`` and ``"y_mean"`` ``(num_samples, N, T, 1)``, as
        :meth:`~pyro_node_uq.methods.MethodResult.predict` returns them (for
        :func:`~pyro_node_uq.diagnostics.score`).

    Example::

        >>> problem = pk_repeated(num_units=8)
        >>> pk_population_predictive(problem.test, num_samples=5)["obs"].shape
        torch.Size([5, 2, 33, 1])
    """
    gen = torch.Generator().manual_seed(seed)
    dt = split.t.dtype
    N = len(split)
    eta = torch.randn(num_samples, N, 2, generator=gen, dtype=dt) * torch.tensor(OMEGA, dtype=dt)
    doses = type(split.doses)(*(v.repeat(num_samples, *[1] * (v.dim() - 1)) for v in split.doses))
    mean = pk_closed_form(split.t, doses, K_ELIM * eta[..., 0].exp().flatten(), eta[..., 1].exp().flatten())
    mean = mean.reshape(num_samples, N, -1, 1)
    return {"obs": mean + noise * torch.randn(mean.shape, generator=gen, dtype=dt), "y_mean": mean}


def pk_repeated(num_units=40, num_obs=8, noise=0.1, test_fraction=0.25, time_fraction=2 / 3, seed=0):
    """Synthetic repeated-bolus one-compartment PK with known per-unit random effects.

    Unit i gets boluses of ``a_i`` mg/kg (``a_i`` uniform in {1, 2, 3}) at 0, 12, 24 and 36 h; its plasma
    concentration (mg/L) is

        C_i(t) = exp(eta_i2) sum_{t_d <= t} a_i exp(-k exp(eta_i1) (t - t_d)),   k = 0.1 / h,  V = 1 L/kg,

    with eta_i ~ Normal(0, diag(0.3^2, 0.2^2)) (``eta_true``: log elimination-rate and log concentration
    multipliers, in the convention of :class:`~pyro_node_uq.models.HierarchicalNODEModel` with
    ``effects=("rate", "output")``).  Each unit is sampled at ``num_obs`` times drawn uniformly on [0.5, 47.5] h
    and rounded to whole hours (ragged: a union grid with masks); observations ``C + Normal(0, noise^2)``.
    Splits: :func:`~pyro_node_uq.data.units.units_problem` (new units in ``test``, the fitted units' later
    observations in ``extrapolation``).

    :param int num_units: number of units.
    :param int num_obs: observations per unit.
    :param float noise: observation noise std (mg/L).
    :param float test_fraction: fraction of units held out as new units.
    :param float time_fraction: fraction of each fitted unit's observations used for training.
    :param int seed: seed of the effects, doses, sampling times, noise and split.
    """
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    eta = torch.randn(num_units, 2, generator=gen, dtype=dt) * torch.tensor(OMEGA, dtype=dt)
    amount = torch.randint(1, 4, (num_units, 1), generator=gen).to(dt)
    doses = DoseSchedule.from_lists([[0.0, 12.0, 24.0, 36.0]] * num_units, amount.expand(num_units, 4).tolist(),
                                    dtype=dt)
    times = (torch.rand(num_units, num_obs, generator=gen, dtype=dt) * 47 + 0.5).round().clamp(1, 48)
    grid = torch.unique(times)
    mask = (times[:, :, None] == grid).any(1)
    conc = pk_closed_form(grid, doses, K_ELIM * eta[:, 0].exp(), eta[:, 1].exp())
    y = conc + noise * torch.randn(conc.shape, generator=gen, dtype=dt)
    units = Units(t=grid, x=None, y=torch.where(mask, y, 0.0)[..., None], mask=mask, y_true=conc[..., None],
                  doses=doses, eta_true=eta)
    return units_problem(
        "pk_repeated", pk_repeated.__doc__, units, test_fraction, time_fraction, seed,
        obs_names=("concentration",), time_unit="h", noise_scale=noise,
        model_kwargs={"hidden_dim": 1, "R_hidden": (16,), "Z_hidden": None, "effects": ("rate", "output"),
                          "scale": "learned", "scale_init": 0.3, "solver": {"method": "rk4"}})


def theophylline_table(dose_unit="mg/kg"):
    """The vendored theophylline data as a NONMEM-style event table (``pandas.DataFrame``): per subject an oral
    dose (``AMT``, ``EVID`` 1, ``CMT`` 2 = gut) at 0 h and the concentrations (``DV`` mg/L, ``CMT`` 1 =
    central, the first hidden component, which the model observes).

    :param str dose_unit: ``"mg/kg"`` (the file's ``Dose``) or ``"mg"`` (``Dose * Wt``, as in nlmixr2's
        ``theo_sd``: the unit in which a compartment model's volume comes out in litres).
    """
    if dose_unit not in ("mg/kg", "mg"):
        raise ValueError(f"dose_unit: expected 'mg/kg' or 'mg', got {dose_unit!r}")
    rows = read_csv("theoph.csv")
    out = []
    for s in sorted({int(r["Subject"]) for r in rows}):
        mine = [r for r in rows if int(r["Subject"]) == s]
        amount = mine[0]["Dose"] * (mine[0]["Wt"] if dose_unit == "mg" else 1.0)
        out.append({"ID": s, "TIME": 0.0, "DV": ".", "AMT": amount, "EVID": 1, "CMT": 2, "WT": mine[0]["Wt"]})
        out += [{"ID": s, "TIME": r["Time"], "DV": r["conc"], "AMT": 0.0, "EVID": 0, "CMT": 1, "WT": r["Wt"]} for r in mine]
    return pd.DataFrame(out)


def theophylline_events(test_fraction=0.25, time_fraction=2 / 3, seed=0, num_folds=None, fold=0):
    """Theophylline PK on dose events with per-subject random effects: 12 subjects, one oral dose (mg/kg) into
    the gut compartment (the second hidden component) at 0 h, plasma concentrations (mg/L, the first) over ~25 h at each
    subject's own times.  Covariate: body weight ``WT`` (kg).  Splits as in
    :func:`~pyro_node_uq.data.units.units_problem` (held-out subjects; the fitted subjects' last observations).
    Noise level: unknown (learned).  The recommended model has ``equilibrium="zero"`` (no drug, no change): the
    training samples end at ~7 h, and a free vector field levels off near 3 mg/L beyond them where the data fall
    to ~1 mg/L at 24 h.

    :param float test_fraction: fraction of subjects held out.
    :param float time_fraction: fraction of each fitted subject's observations used for training.
    :param int seed: seed of the subject split.
    :param int num_folds, fold: hold out fold ``fold`` of ``num_folds`` instead
        (:func:`~pyro_node_uq.data.unit_folds`): with 12 subjects, 3 held out are too few to compare models on, so
        compare on every fold (``num_folds=4``: each subject held out once).

    Source: Boeckmann, Sheiner & Beal (1994), NONMEM Users Guide; R's ``datasets::Theoph``.
    """
    units = refine_grid(read_events(theophylline_table(), covariates=["WT"]), 0.5)  # rk4 steps of <= 0.5 h
    return units_problem(
        "theophylline_events", theophylline_events.__doc__, units, test_fraction, time_fraction, seed, num_folds, fold,
        obs_names=("concentration",), time_unit="h",
        model_kwargs={"hidden_dim": 2, "R_hidden": (16,), "Z_hidden": None, "effects": ("rate", "output"),
                          "covariate_dim": 1, "covariate_loc": 70.0, "covariate_scale": 10.0, "scale": "learned",
                          "scale_init": 0.5, "equilibrium": "zero", "solver": {"method": "rk4"}})
