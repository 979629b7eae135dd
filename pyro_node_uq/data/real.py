"""Real data sets vendored as package data (see ``files/PROVENANCE.md``)."""
import csv
from importlib import resources

import torch

from .problem import Problem, Split

__all__ = ["hare_lynx", "read_csv", "theophylline"]


def read_csv(filename):
    """Rows of a vendored CSV file as a list of dicts of floats (``rownames`` dropped)."""
    path = resources.files("pyro_node_uq.data") / "files" / filename
    try:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"vendored data file {filename!r} is missing from the package ({path})") from e
    return [{k: float(v) for k, v in r.items() if k != "rownames"} for r in rows]


def _masked_split(t, x, y, observed, ids):
    return Split(t=t, x=x, y=torch.where(observed[..., None], y, torch.zeros_like(y)), mask=observed, ids=ids)


def theophylline(t_split=12.0, test_subjects=(9, 10, 11, 12)):
    """Theophylline PK: 12 subjects, an oral dose at t = 0 and plasma concentrations over ~25 h.

    Trajectories share the union of all sampling times (hours); ``mask`` marks each subject's own samples.
    Input: the dose in mg/kg (constant, read at t0 by ``init="input"``); output: concentration in mg/L.
    Hidden: drug amount still in the gut and in the body (two compartments; not observed).
    Splits: train = the other subjects up to ``t_split`` hours; test = ``test_subjects`` up to ``t_split``;
    extrapolation = ``test_subjects`` after ``t_split`` (a longer horizon).  Noise level: unknown (learned).

    Source: Boeckmann, Sheiner & Beal (1994), NONMEM Users Guide; R's ``datasets::Theoph``.
    """
    rows = read_csv("theoph.csv")
    subjects = sorted({int(r["Subject"]) for r in rows})
    unknown = set(test_subjects) - set(subjects)
    if unknown:
        raise ValueError(f"test_subjects: no subjects {sorted(unknown)} in theoph.csv (have {subjects})")
    times = sorted({r["Time"] for r in rows})
    t = torch.tensor(times, dtype=torch.float64)
    index = {v: i for i, v in enumerate(times)}
    n, T = len(subjects), len(times)
    y = torch.zeros(n, T, 1, dtype=torch.float64)
    obs = torch.zeros(n, T, dtype=torch.bool)
    dose = torch.zeros(n, dtype=torch.float64)
    for r in rows:
        i, j = subjects.index(int(r["Subject"])), index[r["Time"]]
        y[i, j, 0], obs[i, j], dose[i] = r["conc"], True, r["Dose"]
    x = dose[:, None, None].expand(n, T, 1).clone()
    ids = torch.tensor(subjects)
    is_test = torch.tensor([s in test_subjects for s in subjects])
    early = (t <= t_split)[None, :]
    tr, te = ~is_test, is_test
    make = lambda rows_, m: _masked_split(t, x[rows_], y[rows_], obs[rows_] & m, ids[rows_])
    return Problem(
        name="theophylline", description=theophylline.__doc__,
        train=make(tr, early), test=make(te, early), extrapolation=make(te, ~early),
        obs_names=("concentration",), input_names=("dose",), state_names=(), time_unit="h",
        model_kwargs={"hidden_dim": 2, "R_hidden": (16,), "Z_hidden": None, "init": "input", "scale": "learned",
                          "scale_init": 0.5, "prior_scale": {"H0.*": 5.0, "*": 1.0}},
    )


def hare_lynx(test_from=1915, extrapolation_from=1918):
    """Hudson's Bay Company hare and lynx pelts, 1900-1920 (one trajectory, a predator-prey cycle).

    Time in years since 1900; outputs in tens of thousands of pelts (the CSV's thousands / 10).  No inputs.
    Splits on the one trajectory: train = years before ``test_from``; test = ``test_from`` up to
    ``extrapolation_from``; extrapolation = later years.  Noise level: unknown (learned).

    Source: Howard (2009), Modeling basics, lecture notes.
    """
    rows = read_csv("hudson_bay_hare_lynx.csv")
    years = torch.tensor([r["year"] for r in rows], dtype=torch.float64)
    y = torch.tensor([[r["hare"], r["lynx"]] for r in rows], dtype=torch.float64)[None] / 10.0
    t = years - years[0]
    make = lambda m: _masked_split(t, None, y, m[None], torch.tensor([0]))
    return Problem(
        name="hare_lynx", description=hare_lynx.__doc__,
        train=make(years < test_from), test=make((years >= test_from) & (years < extrapolation_from)),
        extrapolation=make(years >= extrapolation_from),
        obs_names=("hare", "lynx"), input_names=(), state_names=(), time_unit="yr",
        model_kwargs={"hidden_dim": 4, "R_hidden": (32,), "Z_hidden": None, "init": "learned", "scale": "learned",
                          "scale_init": 0.5, "prior_scale": {"h0": 5.0, "*": 1.0}},
    )
