"""The mechanistic structures: closed forms against ODE solves, mass balance, limits, batching, errors."""
import itertools

import pytest
import torch
import torchdiffeq

from pyro_node_uq.distributions import DoseSchedule
from pyro_node_uq.models.structures import (
    STRUCTURES,
    Structure,
    arrhenius_chain,
    get_structure,
)


def _theta(structure, batch=()):
    return {k: torch.full(batch, float(v), dtype=torch.float64) for k, v in structure.params.items()}


@pytest.mark.parametrize("name", ["one_compartment_iv", "one_compartment_oral"])
def test_closed_form_matches_an_ode_solve(name):
    s = get_structure(name)
    theta = {k: torch.tensor([v, 1.7 * v], dtype=torch.float64) for k, v in s.params.items()}  # two units
    cmt = [[s.dose_state, 0], [0, s.dose_state]]
    doses = DoseSchedule.from_lists([[0.0, 3.0], [0.5, 2.0]], [[100.0, 40.0], [60.0, 80.0]], cmt,
                                    dtype=torch.float64)
    t = torch.tensor([0.5, 1.0, 2.0, 3.0, 5.0, 9.0], dtype=torch.float64)
    closed = s.solution(t, doses, theta)  # (2, T, H)
    for i in range(2):
        h = torch.zeros(s.hidden_dim, dtype=torch.float64)
        th = {k: v[i] for k, v in theta.items()}
        times = sorted({0.0, *doses.time[i].tolist(), *t.tolist()})
        out = {}
        def rhs(_, y, th=th):
            return s.field(y, None, th)

        for a, b in itertools.pairwise(times):
            for j in range(2):
                if float(doses.time[i, j]) == a:
                    h = h.clone()
                    h[int(doses.compartment[i, j])] += float(doses.amount[i, j])
            if a in t.tolist():
                out[a] = h
            h = torchdiffeq.odeint(rhs, h, torch.tensor([a, b], dtype=torch.float64),
                                   rtol=1e-10, atol=1e-10)[-1]
        out[times[-1]] = h
        ref = torch.stack([out[v] for v in t.tolist()])
        assert torch.allclose(closed[i], ref, rtol=1e-6, atol=1e-8)


def test_bateman_is_stable_when_ka_equals_ke():
    s = get_structure("one_compartment_oral")
    doses = DoseSchedule.from_lists([[0.0]], [[10.0]], [[1]], dtype=torch.float64)
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    equal = {"CL": torch.tensor([2.0]), "V": torch.tensor([4.0]), "ka": torch.tensor([0.5])}
    near = dict(equal, ka=torch.tensor([0.5 + 1e-7]))
    a, b = s.solution(t, doses, equal), s.solution(t, doses, near)
    assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=1e-5)
    assert torch.allclose(a[0, :, 0], 10.0 * 0.5 * t * torch.exp(-0.5 * t))  # D ka t exp(-k t)


@pytest.mark.parametrize("name", ["one_compartment_oral", "two_compartment_iv", "two_compartment_oral"])
def test_linear_compartments_lose_mass_only_by_clearance(name):
    s = get_structure(name)
    h = torch.rand(5, 3, s.hidden_dim, dtype=torch.float64) * 10
    th = _theta(s, (5, 3))
    dh = s.field(h, None, th)
    assert dh.shape == h.shape
    assert torch.allclose(dh.sum(-1), -th["CL"] / th["V"] * h[..., 0])


def test_michaelis_menten_is_linear_at_low_concentration():
    mm, lin = get_structure("michaelis_menten_iv"), get_structure("one_compartment_iv")
    h = torch.tensor([[1e-6]], dtype=torch.float64)
    th = {"Vmax": torch.tensor(10.0), "Km": torch.tensor(2.0), "V": torch.tensor(5.0)}
    ref = lin.field(h, None, {"CL": torch.tensor(5.0), "V": torch.tensor(5.0)})  # CL = Vmax / Km
    assert torch.allclose(mm.field(h, None, th), ref, rtol=1e-6)
    high = torch.tensor([[1e6]], dtype=torch.float64)
    assert torch.allclose(mm.field(high, None, th), torch.tensor([[-10.0]], dtype=torch.float64), rtol=1e-4)


def test_maxwell_and_zener():
    mx, zn = get_structure("maxwell"), get_structure("zener")
    x = torch.tensor([[0.3, 2.0]], dtype=torch.float64)  # strain, strain rate
    sig = torch.tensor([[1.5]], dtype=torch.float64)
    th = {"E": torch.tensor(4.0), "eta": torch.tensor(2.0)}
    assert torch.allclose(mx.field(sig, x, th), torch.tensor([[4.0 * 2.0 - 2.0 * 1.5]], dtype=torch.float64))
    thz = {"E_inf": torch.tensor(1.0), "E1": torch.tensor(2.0), "eta": torch.tensor(2.0)}
    ev = torch.tensor([[0.1]], dtype=torch.float64)
    assert torch.allclose(zn.field(ev, x, thz), torch.tensor([[0.2]], dtype=torch.float64))
    assert torch.allclose(zn.observe(ev, x, thz), torch.tensor([[0.3 + 2.0 * 0.2]], dtype=torch.float64))


def test_arrhenius_chain_conserves_mass_and_speeds_up_when_hot():
    s = arrhenius_chain()
    h = torch.tensor([[0.6, 0.1, 0.3]], dtype=torch.float64)
    th = _theta(s, (1,))
    cold, hot = s.field(h, torch.tensor([[0.0]]).double(), th), s.field(h, torch.tensor([[1.0]]).double(), th)
    assert torch.allclose(cold.sum(-1), torch.zeros(1, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(cold[0, 0], torch.tensor(-0.5 * 0.6, dtype=torch.float64))  # k1 at T_ref
    assert hot[0, 0] < cold[0, 0]


def test_every_library_structure_batches_over_leading_dims():
    for name in STRUCTURES:
        s = get_structure(name)
        h = torch.rand(4, 2, s.hidden_dim, dtype=torch.float64)
        x = torch.rand(4, 2, len(s.inputs), dtype=torch.float64) if s.inputs else None
        th = _theta(s, (4, 2))
        assert s.field(h, x, th).shape == h.shape, name
        assert s.observe(h, x, th).shape == (4, 2, s.obs_dim), name


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="one_compartment_oral"):
        get_structure("no_such_structure")
    with pytest.raises(ValueError, match="positive"):
        Structure("bad", lambda h, x, th: h, ("A",), {"k": -1.0})
    with pytest.raises(TypeError, match="field must be a function"):
        Structure("bad", None, ("A",), {"k": 1.0})


@pytest.mark.parametrize("code", [-1.0, -2.0])
@pytest.mark.parametrize("name, cmt", [("one_compartment_iv", 0), ("one_compartment_oral", 1),
                                       ("one_compartment_oral", 0)])
def test_closed_form_of_modelled_infusions_equals_given_ones(name, cmt, code):
    """With the rate / duration fixed at a value, a modelled infusion's closed form equals a given-rate infusion
    of the same rate and duration: the closed form of that infusion to 1e-9, and an ODE solve of it (tolerance
    1e-11) to 1e-8; for the central compartment also the textbook ``R / CL (1 - exp(-k t))`` then decay."""
    from pyro_node_uq.models.dose_parameters import modelled_infusions

    s = get_structure(name)
    theta = {k: torch.tensor([v, 1.3 * v], dtype=torch.float64) for k, v in s.params.items()}
    D = torch.tensor([2.5, 0.7], dtype=torch.float64)
    value = D if code == -2.0 else 100.0 / D
    times, amounts = [[0.0, 6.0], [0.5]], [[100.0, 100.0], [100.0]]
    modelled = DoseSchedule.from_lists(times, amounts, [[cmt, cmt], [cmt]], [[code, code], [code]])
    given = DoseSchedule.from_lists(times, amounts, [[cmt, cmt], [cmt]], [[float(100 / D[0])] * 2, [float(100 / D[1])]])
    t = torch.tensor([0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 6.5, 9.0, 24.0], dtype=torch.float64)
    closed = s.solution(t, modelled, theta, infusions=modelled_infusions(modelled, {**theta, f"{'RD'[int(-code) - 1]}"
                                                                                    f"{cmt + 1}": value}))
    assert torch.allclose(closed, s.solution(t, given, theta, infusions=(given.rate, given.end())), rtol=0, atol=1e-9)
    for i in range(2):
        th = {k: v[i] for k, v in theta.items()}
        grid = torch.tensor(sorted({*t.tolist(), *given.time[i][given.mask[i]].tolist(),
                                    *given.end()[i][given.mask[i]].tolist()}), dtype=torch.float64)
        out, h = {}, torch.zeros(s.hidden_dim, dtype=torch.float64)
        for a, b in itertools.pairwise(grid.tolist()):
            u = given.infusion_on(a, b, s.hidden_dim)[i]
            h = torchdiffeq.odeint(lambda _, y, th=th, u=u: s.field(y, None, th) + u, h,
                                   torch.tensor([a, b], dtype=torch.float64), rtol=1e-11, atol=1e-11)[-1]
            out[b] = h
        ode = torch.stack([out.get(x, torch.zeros(s.hidden_dim, dtype=torch.float64)) for x in t.tolist()])
        assert torch.allclose(closed[i], ode, rtol=0, atol=1e-8), (closed[i] - ode).abs().max()
    if cmt == 0:
        k, R, start = theta["CL"][0] / theta["V"][0], 100 / D[0], 0.0
        during = R / k * (1 - torch.exp(-k * (t - start)))
        after = R / k * (1 - torch.exp(-k * D[0])) * torch.exp(-k * (t - start - D[0]))
        mask = t <= 6.0  # before the second dose
        exact = torch.where(t <= start + D[0], during, after)
        assert torch.allclose(closed[0, mask, 0], exact[mask], rtol=0, atol=1e-9)
