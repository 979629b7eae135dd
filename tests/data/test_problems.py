import pytest
import torch

from pyro_node_uq.data import PROBLEMS, load_problem, return_mapping


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_problem_shapes_and_default_model(name):
    p = load_problem(name)
    if p.task != "trajectories":  # static (x, y) pairs for an SDE-BNN
        for split in p.splits.values():
            assert split.x.shape == (len(split), p.input_dim) and split.ids.shape == (len(split),)
        assert p.description and p.default_model().output_dim == p.obs_dim
        return
    for split in p.splits.values():
        N, T = split.y.shape[:2]
        assert split.t.shape == (T,) and split.ids.shape == (N,)
        if p.input_dim:
            assert split.x.shape == (N, T, p.input_dim)
        if split.h_true is not None:
            assert split.h_true.shape[:2] == (N, T) and split.y_true.shape == split.y.shape
    assert p.description and p.default_model().obs_dim == p.obs_dim


def test_seed_determinism():
    a, b, c = load_problem("chemical", seed=3), load_problem("chemical", seed=3), load_problem("chemical", seed=4)
    assert torch.equal(a.train.y, b.train.y) and not torch.equal(a.train.y, c.train.y)


def test_chemical_truth():
    p = load_problem("chemical")
    h = p.train.h_true
    assert torch.allclose(h.sum(-1), torch.ones(()), atol=1e-5)  # mass conservation A + B + C = 1
    assert (h[..., 2] >= -1e-6).all() and torch.equal(p.train.y_true, h[..., :2])
    assert (p.train.y - p.train.y_true).std() == pytest.approx(0.02, rel=0.1)
    amp = lambda s: s.x.abs().amax((1, 2)).mean()
    assert amp(p.extrapolation) > 1.5 * amp(p.train)  # unseen temperature amplitudes (U(35,50) vs U(10,30) K)


def test_viscoelastic_truth():
    p = load_problem("viscoelastic", dtype=torch.float64)
    s = p.test
    eps, ev = s.x[..., 0:1], s.h_true
    assert torch.allclose(s.y_true, 1.0 * eps + 2.0 * (eps - ev))


def test_elastoplastic_return_mapping():
    eps = torch.cat([torch.linspace(0, 3, 301), torch.linspace(3, -3, 601)[1:]])[None].double()
    sigma, ep, al, p = return_mapping(eps)
    xi = sigma - al
    assert (xi.abs() <= 1.0 + 0.1 * p + 1e-9).all()  # never outside the yield surface
    assert sigma[0, 50] == pytest.approx(0.5)  # elastic branch
    assert torch.all(p[:, 1:] >= p[:, :-1])  # accumulated plastic strain never decreases
    assert torch.allclose(al, 0.2 * ep)  # linear kinematic hardening


def test_theophylline_masks_and_provenance():
    p = load_problem("theophylline")
    train, test, extra = p.train, p.test, p.extrapolation
    assert len(train) == 8 and len(test) == 4 and train.ids.tolist() == list(range(1, 9))
    assert int(test.mask.sum() + extra.mask.sum()) == 44  # 11 samples for each of 4 test subjects
    assert (test.mask & extra.mask).sum() == 0
    assert float(train.y[train.mask].max()) == pytest.approx(11.4, abs=0.01)  # subject 1 peak (mg/L)


def test_hare_lynx_splits():
    p = load_problem("hare_lynx")
    assert p.train.mask.sum() == 15 and p.test.mask.sum() == 3 and p.extrapolation.mask.sum() == 3
    assert p.train.y[0, 0].tolist() == pytest.approx([3.0, 0.4])


def test_unknown_problem_and_bad_subjects():
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        load_problem("nope")
    with pytest.raises(ValueError, match="test_subjects: no subjects"):
        load_problem("theophylline", test_subjects=(99,))
