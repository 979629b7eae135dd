import pytest
import torch
from pyro.infer.autoguide import AutoMultivariateNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods.layerwise import run_layerwise


@pytest.fixture(scope="module")
def tiny():
    return load_problem("chemical", num_train=3, num_times=11)


def _fit(tiny, **options):
    return run_layerwise(tiny.default_model(R_hidden=(4,)), tiny.train, num_steps=1, map_steps=2, lr=1e-6,
                         elbo_particles=0, progress_bar=False, **options)


def test_the_stochastic_guide_starts_narrow_around_the_map_fit(tiny):
    res = _fit(tiny, guide_kwargs={"num_steps": 2})
    scale = res.guide.stochastic_guide.scale.detach()
    assert res.stochastic_dim == 15  # R's last layer: 3 x 4 weights and 3 biases
    assert torch.allclose(scale, torch.full_like(scale, 0.02), rtol=1e-3)  # one step at lr 1e-6 barely moves it


def test_guide_kwargs_name_their_own_scale_and_another_guide_class_takes_init_scale(tiny):
    res = _fit(tiny, guide_kwargs={"num_steps": 2, "init_scale": 0.3})
    assert torch.allclose(res.guide.stochastic_guide.scale.detach(), torch.tensor(0.3), rtol=1e-3)
    mvn = _fit(tiny, guide=AutoMultivariateNormal, init_scale=0.05)
    assert torch.allclose(mvn.guide.stochastic_guide.scale.detach(), torch.tensor(0.05), rtol=1e-3)


def test_a_model_without_the_layers_is_skipped_by_name_before_any_fit():
    from pyro_node_uq.data import events_problem, structured_problem
    from pyro_node_uq.data.pk import theophylline_table
    from pyro_node_uq.methods import MethodSkipped

    problem = structured_problem(events_problem(theophylline_table("mg")))  # no network correction: no layers
    with pytest.raises(MethodSkipped, match="no 'last_layer' sites.*without a network correction"):
        run_layerwise(problem.default_model(), problem.train, num_steps=1, map_steps=2, progress_bar=False)
