"""Cost of modelled infusion durations (NONMEM's RATE -2) against given-rate infusions, per log joint and gradient.

24 units simulated from the one-compartment IV model (CL 2, V 20, omega 0.2; a 100 mg dose over 3 h at 0 and 12,
8 ragged samples over 24 h), four particles of the grey-box model's latent sites in one vectorised call.  Four
variants of the same data: a given 3 h infusion (rate 100 / 3, today's ODE path: the baseline), the duration as
the parameter ``D1`` on the ODE path (the field without its closed form: every member's infusion ends cut the
solve), the same on the closed form, and a bolus on the closed form.  Printed: median seconds of a log joint
plus its gradient over interleaved repeats and the ratio to the baseline.

    python benchmarks/modelled_infusions.py [--repeats 7]
"""
import argparse

import pyro
import torch
from timing import interleaved

from pyro_node_uq.data.mechanistic import mechanistic_units
from pyro_node_uq.models import GreyBoxNODEModel, Structure
from pyro_node_uq.models.structures import get_structure


def _log_joint(model, units, values):
    """Log joint of the conditioned model over four particles, and its gradient with respect to the values."""
    values = {k: v.detach().requires_grad_() for k, v in values.items()}
    with pyro.plate("particles", 4, dim=-2):
        tr = pyro.poutine.trace(pyro.poutine.condition(model, values)).get_trace(
            units.t, None, units.y, mask=units.mask, doses=units.doses)
    lp = tr.log_prob_sum()
    lp.backward()
    return lp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    truth = {"CL": 2.0, "V": 20.0, "D1": 3.0}
    modelled = mechanistic_units("one_compartment_iv", truth, (0.2, 0.2, 0.0), 0.1, num_units=24, num_obs=8,
                                 t_end=24.0, dose=100.0, dose_times=(0.0, 12.0), rate=-2, seed=0)
    given = modelled.select(torch.arange(len(modelled)),
                            doses=modelled.doses._replace(rate=torch.full_like(modelled.doses.rate, 100.0 / 3.0)))
    bolus = modelled.select(torch.arange(len(modelled)),
                            doses=modelled.doses._replace(rate=torch.zeros_like(modelled.doses.rate)))
    s = get_structure("one_compartment_iv")
    no_closed_form = Structure("iv_ode", s.field, s.states, s.params, s.observe_fn)
    gen = torch.Generator().manual_seed(0)
    N = len(modelled)
    base = {"CL_pop": torch.tensor(2.0), "V_pop": torch.tensor(20.0), "sigma": torch.tensor([0.1])}
    cases = {
        "given infusion, ODE (baseline)": (GreyBoxNODEModel(s), given, 2),
        "modelled duration, ODE": (GreyBoxNODEModel(no_closed_form, dose_parameters={"D1": 1.0}), modelled, 3),
        "modelled duration, closed form": (GreyBoxNODEModel(s, dose_parameters={"D1": 1.0}), modelled, 3),
        "bolus, closed form": (GreyBoxNODEModel(s), bolus, 2),
    }
    fns = {}
    for name, (model, units, P) in cases.items():
        values = {**base, "omega": torch.full((P,), 0.2), "eta_z": torch.randn(4, N, P, generator=gen)}
        if P == 3:
            values["D1_pop"] = torch.tensor(3.0)
        fns[name] = lambda m=model, u=units, v=values: _log_joint(m, u, v)
    times = interleaved(fns, args.repeats)
    reference = times["given infusion, ODE (baseline)"]
    print(f"{'variant':34s} {'seconds':>9s} {'ratio':>7s}")
    for name, sec in times.items():
        print(f"{name:34s} {sec:9.4f} {sec / reference:7.2f}")


if __name__ == "__main__":
    main()
