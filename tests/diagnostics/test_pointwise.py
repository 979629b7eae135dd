"""Pointwise log likelihood: one entry per observed (trajectory, time, output), through Pyro's wrappers, masked
entries zero, and a distribution's own ``log_prob_pointwise`` preferred."""
import pyro.distributions as dist
import pytest
import torch

from pyro_node_uq.diagnostics.pointwise import pointwise_log_likelihood


def test_independent_normal_entries_by_hand():
    loc, value = torch.zeros(2, 3, 1), torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1).expand(2, 3, 1)
    fn = dist.Normal(loc, 1.0).to_event(2)
    lp = pointwise_log_likelihood(fn, value)
    expected = -0.5 * value ** 2 - 0.5 * torch.log(torch.tensor(2 * torch.pi))
    assert lp.shape == (2, 3, 1)
    torch.testing.assert_close(lp, expected)
    torch.testing.assert_close(lp.sum((-1, -2)), fn.log_prob(value))  # the entries sum to the joint density


def test_masked_entries_are_zero_through_expand_and_mask_wrappers():
    mask = torch.tensor([[True, False, True], [False, True, True]])
    base = dist.Normal(torch.zeros(3, 1), 1.0).expand([2, 3, 1])
    fn = base.mask(mask[..., None]).to_event(2)
    value = torch.ones(2, 3, 1)
    lp = pointwise_log_likelihood(fn, value)
    expected = torch.where(mask[..., None], dist.Normal(0.0, 1.0).log_prob(torch.tensor(1.0)), torch.tensor(0.0))
    torch.testing.assert_close(lp, expected)
    torch.testing.assert_close(lp.sum((-1, -2)), fn.log_prob(value))


def test_a_joint_law_inside_an_entry_is_summed_to_the_entry():
    """A 2-d multivariate normal per (trajectory, time): the entry is the pair, its density the joint one."""
    fn = dist.MultivariateNormal(torch.zeros(4, 2), torch.eye(2)).to_event(1)
    value = torch.randn(4, 2)
    lp = pointwise_log_likelihood(fn, value)
    assert lp.shape == (4,)
    torch.testing.assert_close(lp, dist.MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(value))


def test_a_distributions_own_pointwise_density_is_used():
    class Own(dist.Normal):
        def log_prob_pointwise(self, value):
            return torch.full(value.shape, -7.0)

    fn = Own(torch.zeros(2, 3), 1.0).to_event(1)
    assert torch.equal(pointwise_log_likelihood(fn, torch.zeros(2, 3)), torch.full((2, 3), -7.0))


@pytest.mark.parametrize("flag, expected", [(False, 0.0), (True, None)])
def test_a_boolean_mask_keeps_or_zeroes_every_entry(flag, expected):
    fn = dist.Normal(torch.zeros(3), 1.0).mask(flag).to_event(1)
    lp = pointwise_log_likelihood(fn, torch.zeros(3))
    want = dist.Normal(0.0, 1.0).log_prob(torch.zeros(3))
    torch.testing.assert_close(lp, want if expected is None else torch.zeros(3) * want)
