"""NONMEM-like diagnostics of a fitted grey-box model: the prediction table, eta shrinkage, typical parameters."""
import pytest
import torch

from pyro_node_uq.data.mechanistic import mechanistic_units
from pyro_node_uq.diagnostics.nlme import (
    eta_shrinkage,
    prediction_table,
    typical_parameters,
)
from pyro_node_uq.methods import run_autonormal, run_map
from pyro_node_uq.models import GreyBoxNODEModel


@pytest.fixture(scope="module")
def fit():
    units = mechanistic_units("one_compartment_iv", {"CL": 2.0, "V": 20.0}, 0.3, 0.1, num_units=6, num_obs=5,
                              dose=100.0, seed=1)
    model = GreyBoxNODEModel("one_compartment_iv", typical={"CL": 2.0, "V": 20.0})
    start = run_map(model, units, num_steps=300, progress_bar=False)
    return run_autonormal(model, units, warm_start=start, num_steps=50, progress_bar=False, elbo_particles=0)


def test_prediction_table(fit):
    units = fit.train_split
    table = prediction_table(fit, units, num_samples=50)
    assert list(table.columns) == ["ID", "TIME", "DV", "PRED", "IPRED", "RES", "IRES", "IWRES"]
    assert len(table) == int(units.mask.sum())
    # individual predictions fit each unit's own data better than the population prediction
    assert table.IRES.abs().mean() < table.RES.abs().mean()
    assert torch.allclose(torch.tensor((table.DV - table.IPRED).values), torch.tensor(table.IRES.values))


def test_shrinkage_and_typical_parameters(fit):
    shrink = eta_shrinkage(fit, num_samples=50)
    assert set(shrink) == {"CL", "V"} and all(-1 < v < 1 for v in shrink.values())
    params = typical_parameters(fit, num_samples=200).set_index("parameter")
    assert {"CL_pop", "V_pop", "omega[CL]", "CV%[V]", "sigma"} <= set(params.index)
    assert (params["lower"] <= params["median"]).all() and (params["median"] <= params["upper"]).all()
    assert 1.0 < params.loc["CL_pop", "median"] < 4.0
