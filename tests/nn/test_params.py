"""Network parameters as Pyro sample sites: prior scales by pattern, the sampled sites' priors, flattening and its
inverse, site selection, and errors naming the site or pattern."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_node_uq.nn.params import (
    flatten_params,
    resolve_prior_scale,
    sample_params,
    select_sites,
    unflatten_params,
)

SHAPES = {"R.0.weight": (3, 2), "R.0.bias": (3,), "Z.0.weight": (1, 3)}


def test_prior_scale_first_matching_pattern_wins():
    scales = {"Z.*": 0.5, "*.bias": 2.0, "*": 1.0}
    assert [resolve_prior_scale(s, scales) for s in SHAPES] == [1.0, 2.0, 0.5]
    assert resolve_prior_scale("R.0.bias", {"*": 3, "*.bias": 2.0}) == 3.0  # order of the dict, not specificity
    assert resolve_prior_scale("anything", 0.1) == 0.1


@pytest.mark.parametrize("scale, match", [({"Z.*": 1.0}, "no pattern matches site 'R.0.bias'; add a '\\*' default"),
                                          (0.0, "prior_scale for site 'R.0.bias' must be positive, got 0.0"),
                                          ({"*": -1}, "must be positive, got -1.0"),
                                          (float("nan"), "must be positive, got nan")])
def test_prior_scale_errors_name_the_site(scale, match):
    with pytest.raises(ValueError, match=match):
        resolve_prior_scale("R.0.bias", scale)


def test_sampled_sites_are_events_with_their_normal_prior():
    tr = poutine.trace(sample_params).get_trace(SHAPES, {"*.bias": 2.0, "*": 0.5})
    for site, shape in SHAPES.items():
        fn = tr.nodes[site]["fn"]
        assert fn.event_shape == shape and fn.batch_shape == () and tr.nodes[site]["value"].shape == shape
    x = torch.ones(3)
    assert float(tr.nodes["R.0.bias"]["fn"].log_prob(x)) == pytest.approx(float(dist.Normal(0, 2.0).log_prob(x).sum()))
    with pyro.plate("particles", 4, dim=-1):  # a vectorised particle plate adds a batch dimension
        params = sample_params(SHAPES)
    assert params["R.0.weight"].shape == (4, 3, 2) and list(params) == list(SHAPES)


def test_flatten_by_hand_and_unflatten_inverts_it():
    params = {"R.0.weight": torch.arange(6.0).reshape(3, 2), "R.0.bias": torch.tensor([6.0, 7.0, 8.0]),
              "Z.0.weight": torch.tensor([[9.0, 10.0, 11.0]])}
    flat = flatten_params(params, SHAPES)
    assert torch.equal(flat, torch.arange(12.0))  # row-major, in the order of the shapes
    back = unflatten_params(flat, SHAPES)
    assert list(back) == list(SHAPES) and all(torch.equal(back[k], params[k]) for k in SHAPES)


def test_flatten_broadcasts_batch_dimensions_of_the_sites():
    params = {"R.0.weight": torch.zeros(5, 3, 2), "R.0.bias": torch.ones(3), "Z.0.weight": torch.zeros(1, 1, 3)}
    flat = flatten_params(params, SHAPES)
    assert flat.shape == (5, 12) and torch.equal(flat[:, 6:9], torch.ones(5, 3))
    assert unflatten_params(flat, SHAPES)["R.0.weight"].shape == (5, 3, 2)
    with pytest.raises(ValueError, match=r"unflatten_params: expected last dim 12, got shape \(5, 11\)"):
        unflatten_params(flat[:, :11], SHAPES)


def test_select_sites_keeps_the_order_of_names_and_names_a_pattern_that_matches_nothing():
    assert select_sites(list(SHAPES), ["Z.*", "*.bias"]) == ["R.0.bias", "Z.0.weight"]
    assert select_sites(list(SHAPES), "R.*") == ["R.0.weight", "R.0.bias"]
    with pytest.raises(ValueError, match=r"no site matches \['W.\*'\]; sites are \['R.0.weight'"):
        select_sites(list(SHAPES), "W.*")
