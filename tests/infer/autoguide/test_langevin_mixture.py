"""AutoLangevinMixture: one component is AutoLangevin itself; untrained, its members follow the mixture reference
with the particles spread evenly over the components; the path bound uses the mixture's log density; and on a
two-mode posterior (closed form: log Z = 0, mean 0, sd sqrt(9 + 0.25)) a two-component guide reaches the evidence
where a single-basin guide stays log 2 below it."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import init_to_value
from pyro.optim import Adam

from pyro_node_uq.infer import AutoLangevin, AutoLangevinMixture


def at(**values):
    return init_to_value(values={k: torch.as_tensor(v) for k, v in values.items()})


def two_sites():
    pyro.sample("a", dist.Normal(0.0, 1.0))
    pyro.sample("b", dist.LogNormal(torch.zeros(2), 1.0).to_event(1))


@pytest.mark.parametrize("reference", ["full", "diagonal"])
def test_one_component_is_autolangevin(reference):
    """Same seed, same parameters, same draws: the mixture machinery reduces to the single-basin guide."""
    init = at(a=0.3, b=[1.5, 0.5])
    draws = []
    for cls, kw in ((AutoLangevin, {"init_loc_fn": init}), (AutoLangevinMixture, {"init_loc_fns": [init]})):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = cls(two_sites, num_steps=4, init_scale=0.2, reference=reference, **kw)
        svi = SVI(two_sites, guide, Adam({"lr": 0.05}), Trace_ELBO(num_particles=4, vectorize_particles=True))
        losses = [svi.step() for _ in range(5)]
        pyro.set_rng_seed(1)
        draws.append((losses, guide.sample_ensemble(6)))
    (l1, d1), (l2, d2) = draws
    assert l1 == pytest.approx(l2, rel=1e-5)
    for name in ("a", "b"):
        torch.testing.assert_close(d1[name], d2[name], rtol=1e-5, atol=1e-6)


def line():
    pyro.sample("x", dist.Normal(0.0, 10.0))


def test_untrained_members_follow_the_mixture_reference():
    """Components at -2 and 2 with std 0.3: half the members in each, each half with its component's moments, and
    the emitted log density is the mixture's (no drift yet: zero path KL)."""
    pyro.set_rng_seed(0)
    guide = AutoLangevinMixture(line, num_steps=3, init_scale=0.3, init_loc_fns=[at(x=-2.0), at(x=2.0)])
    x = guide.sample_ensemble(4000)["x"]
    left, right = x[x < 0], x[x > 0]
    assert len(left) == len(right) == 2000  # 4000 particles, a multiple of M = 2: exactly even
    for half, mean in ((left, -2.0), (right, 2.0)):
        assert abs(float(half.mean()) - mean) < 0.03 and abs(float(half.std()) - 0.3) < 0.02
    z, log_r, pkl, _ = guide.run_chain(torch.Size((5,)))
    mixture = torch.logsumexp(torch.stack([dist.Normal(m, 0.3).log_prob(z[:, 0]) for m in (-2.0, 2.0)]), 0)
    torch.testing.assert_close(log_r, mixture - math.log(2))
    assert torch.equal(pkl, torch.zeros(5))


@pytest.mark.parametrize("num", [6, 7, 2])
def test_particles_are_spread_evenly_over_components(num):
    """Three far-apart components: ``num`` particles give every component ``num // 3`` or one more (a random
    subset of the components when there are fewer particles than components)."""
    guide = AutoLangevinMixture(line, num_steps=2, init_scale=0.01, init_loc_fns=[at(x=v) for v in (-5.0, 0.0, 5.0)])
    for seed in range(5):
        pyro.set_rng_seed(seed)
        x = guide.sample_ensemble(num)["x"]
        counts = torch.bincount(torch.round(x / 5).long() + 1, minlength=3)
        assert int(counts.sum()) == num and int(counts.max() - counts.min()) <= 1, counts


def two_modes():
    """A posterior with two well-separated modes, 0.5 N(-3, 0.5^2) + 0.5 N(3, 0.5^2): a wide prior times the ratio
    of that mixture to the prior, so its evidence is exactly 1 (log Z = 0)."""
    prior = dist.Normal(0.0, 10.0)
    x = pyro.sample("x", prior)
    mix = dist.MixtureSameFamily(dist.Categorical(torch.tensor([0.5, 0.5])),
                                 dist.Normal(torch.tensor([-3.0, 3.0]), torch.tensor([0.5, 0.5])))
    pyro.factor("ratio", mix.log_prob(x) - prior.log_prob(x))


def _fit(guide, steps=150):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(two_modes, guide, Adam({"lr": 0.02}), Trace_ELBO(num_particles=16, vectorize_particles=True))
    for _ in range(steps):
        svi.step()
    pyro.set_rng_seed(1)
    elbo = -Trace_ELBO(num_particles=4000, vectorize_particles=True).loss(two_modes, guide)
    return elbo, guide.sample_ensemble(4000)["x"]


def test_two_components_reach_the_evidence_of_a_two_mode_posterior():
    """Seeds 0 (training) and 1 (estimates).  The mixture's bound reaches log Z = 0 to 0.05 and its members have the
    posterior's mean (0, to 0.15) and sd (sqrt(9.25) = 3.04, to 3%); a single-basin guide started in one mode stays
    in it, log 2 = 0.69 below the evidence (its bound below -0.6)."""
    mixture = AutoLangevinMixture(two_modes, num_steps=5, init_scale=0.3, init_loc_fns=[at(x=-2.5), at(x=2.5)])
    elbo, x = _fit(mixture)
    assert elbo > -0.05 and elbo < 0.02  # a lower bound: above 0 only by Monte-Carlo error
    assert abs(float(x.mean())) < 0.15 and abs(float(x.std()) / math.sqrt(9.25) - 1) < 0.03
    single_elbo, single_x = _fit(AutoLangevin(two_modes, num_steps=5, init_scale=0.3, init_loc_fn=at(x=2.5)))
    assert single_elbo < -0.6 and float((single_x < 0).float().mean()) < 0.01


def test_bad_components_are_refused_by_name():
    with pytest.raises(ValueError, match=r"give init_loc_fns \(one per component\) or num_components"):
        AutoLangevinMixture(line)
    with pytest.raises(ValueError, match="num_components=3 but 2 init_loc_fns"):
        AutoLangevinMixture(line, num_components=3, init_loc_fns=[at(x=0.0), at(x=1.0)])
    with pytest.raises(ValueError, match="reference must be 'auto', 'full' or 'diagonal'"):
        AutoLangevinMixture(line, num_components=2, reference="lowrank")
    with pytest.raises(TypeError, match="init_from is not supported"):
        AutoLangevinMixture(line, num_components=2, init_from=None)
    guide = AutoLangevinMixture(line, num_components=2)
    guide()
    with pytest.raises(NotImplementedError, match="no single learned score"):
        guide.score(torch.zeros(1, 1))
