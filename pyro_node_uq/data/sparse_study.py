"""A sparse repeated-dose study in the NONMEM event format, like a neonatal one: many subjects, few samples each,
doses and clearance scaling with body weight.  Data with a known truth for checking ``compare --data`` on the
design where hierarchical fits are hardest (one or two samples per subject pin nothing by themselves)."""
import numpy as np
import pandas as pd

__all__ = ["sparse_iv_table"]

#: the simulated truth: CL = CL_PER_KG * WT, V = V_PER_KG * WT (L/h, L), log-normal effects of sd OMEGA
CL_PER_KG, V_PER_KG, OMEGA = 0.0047, 0.96, (0.25, 0.15)


def sparse_iv_table(seed=0, num_units=59):
    """Simulate one study: ``num_units`` infants (weight log-normal around 1.4 kg within 0.5-3.6 kg, ``WT``; an
    unrelated score 1-10, ``APGR``), an IV loading dose of 20 mg/kg and 2-11 maintenance doses of 2.5-5 mg/kg about
    every 12 h, 1-6 samples each at random times up to two days after the last dose; one-compartment kinetics with
    clearance and volume proportional to weight (:data:`CL_PER_KG`, :data:`V_PER_KG`) times log-normal effects
    (:data:`OMEGA`), 10% proportional plus 0.5 mg/L additive noise, and 2% of the samples doubled (gross errors).

    :param int seed: seed of the study.
    :param int num_units: number of infants.
    :returns: a ``pandas.DataFrame`` with columns ``ID, TIME, AMT, DV, EVID, MDV, CMT, WT, APGR`` (``DV`` is
        ``"."`` on dose rows), sorted by subject and time, doses first.

    Example::

        >>> table = sparse_iv_table(seed=0)
        >>> table.ID.nunique(), int((table.EVID == 0).sum()), list(table.columns[:5])
        (59, 223, ['ID', 'TIME', 'AMT', 'DV', 'EVID'])
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, num_units + 1):
        wt = float(np.clip(rng.lognormal(np.log(1.4), 0.4), 0.5, 3.6))
        apgr = int(rng.integers(1, 11))
        cl = CL_PER_KG * wt * np.exp(OMEGA[0] * rng.standard_normal())
        v = V_PER_KG * wt * np.exp(OMEGA[1] * rng.standard_normal())
        n_doses = int(rng.integers(3, 12))
        times = [0.0] + [12.0 * j + rng.normal(0, 0.5) for j in range(1, n_doses)]
        amounts = [round(20 * wt, 1)] + [round(float(rng.choice([2.5, 3.0, 4.0, 5.0])) * wt, 1) for _ in times[1:]]
        for t, a in zip(times, amounts):
            rows.append({"ID": i, "TIME": round(t, 1), "AMT": a, "DV": ".", "EVID": 1, "MDV": 1, "CMT": 1, "WT": wt,
                         "APGR": apgr})
        for t in np.sort(rng.uniform(1.0, times[-1] + 48, int(rng.integers(1, 7)))):
            c = sum(a / v * np.exp(-cl / v * (t - s)) for s, a in zip(times, amounts) if s <= t)
            y = c * (1 + 0.1 * rng.standard_normal()) + 0.5 * rng.standard_normal()
            y *= 2.0 if rng.uniform() < 0.02 else 1.0
            rows.append({"ID": i, "TIME": round(float(t), 1), "AMT": 0, "DV": round(float(y), 2), "EVID": 0,
                         "MDV": 0, "CMT": 1, "WT": wt, "APGR": apgr})
    return pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False])
