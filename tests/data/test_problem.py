"""Problems: shapes of every registered problem and its default model, seeding, unknown names."""
import pytest
import torch

from pyro_node_uq.data import PROBLEMS, load_problem


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







def test_unknown_problem_and_bad_subjects():
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        load_problem("nope")
    with pytest.raises(ValueError, match="test_subjects: no subjects"):
        load_problem("theophylline", test_subjects=(99,))


def test_random_sines_rate_is_the_time_derivative_and_the_amplitude_bounds_the_signal():
    from pyro_node_uq.data.problem import random_sines

    s = random_sines(4, (1.0, 2.0), (0.1, 0.5), offset=3.0, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.0, 5.0, 11, dtype=torch.float64)
    h = 1e-6
    assert torch.allclose(s.rate(t), (s(t + h) - s(t - h)) / (2 * h), atol=1e-6)
    assert s(t).shape == (4, 11) and s(1.0).shape == (4,) and torch.allclose(s(1.0), s(t)[:, 2])
    assert ((s(t) - 3.0).abs() <= s.amp + 1e-12).all() and ((s.amp >= 1.0) & (s.amp <= 2.0)).all()
    assert torch.allclose(s.weights.sum(-1), torch.ones(4, dtype=torch.float64))


def test_a_split_of_the_wrong_shape_is_refused_naming_problem_and_split():
    from pyro_node_uq.data import Problem, Split

    good = Split(t=torch.linspace(0, 1, 3), x=None, y=torch.zeros(2, 3, 1))
    bad = Split(t=torch.linspace(0, 1, 3), x=None, y=torch.zeros(2, 4, 1))
    with pytest.raises(ValueError, match="problem 'p', split 'test'"):
        Problem("p", "d", train=good, test=bad, extrapolation=None, obs_names=("y",))
    p = Problem("p", "d", train=good, test=good, extrapolation=None, obs_names=("y",))
    assert list(p.splits) == ["train", "test"] and p.obs_dim == 1 and p.input_dim == 0
    assert torch.equal(good.ids, torch.arange(2)) and good.kwargs == {} and len(good) == 2
