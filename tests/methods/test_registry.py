"""The method registry: option resolution order, per-problem scaling of loop counts, both ways to register, errors
that name the unknown method, the demo set."""
import inspect

import pytest

from pyro_node_uq.methods import (
    METHODS,
    Method,
    demo_methods,
    register,
    resolve_methods,
)
from pyro_node_uq.methods.registry import PROBLEM_COST, with_defaults


@pytest.fixture
def toy():
    @register("toy_method", "a toy", defaults={"num_steps": 100, "lr": 0.1}, quick={"num_steps": 5},
              problems={"chemical": {"lr": 0.2}}, start="map")
    def run_toy(model, split, *, warm_start=None, **options):
        return warm_start
    yield METHODS["toy_method"]
    del METHODS["toy_method"]


def test_options_resolve_defaults_problem_quick_then_overrides(toy):
    assert toy.runner.__name__ == "run_toy" and toy.start == "map"
    assert toy.options("chemical") == {"num_steps": 100, "lr": 0.2}
    assert toy.options("chemical", quick=True) == {"num_steps": 5, "lr": 0.2}
    assert toy.options("chemical", quick=True, overrides={"lr": 1.0}) == {"num_steps": 5, "lr": 1.0}


def test_loop_counts_of_costly_problems_are_scaled_but_quick_runs_are_not(toy):
    factor = PROBLEM_COST["elastoplastic"]
    assert toy.options("elastoplastic")["num_steps"] == int(100 * factor) < 100
    assert toy.options("elastoplastic")["lr"] == 0.1  # not a loop count
    assert toy.options("elastoplastic", quick=True)["num_steps"] == 5


def test_a_ready_method_can_be_registered_and_unknown_names_are_listed():
    register(Method("toy_ready", lambda model, split, **_: None, "ready"))
    try:
        assert resolve_methods(["toy_ready"])[0].name == "toy_ready"
        with pytest.raises(ValueError, match=r"unknown \['nope'\]; registered methods are \["):
            resolve_methods(["toy_ready", "nope"])
    finally:
        del METHODS["toy_ready"]


def test_every_method_starts_from_a_registered_method_and_the_demo_set_is_registered():
    for method in METHODS.values():
        assert method.start is None or method.start in METHODS, method.name
        assert method.kind in ("posterior", "error"), method.name
    demo = demo_methods()
    assert demo and set(demo) <= set(METHODS) and "nuts" in demo  # the reference, affordable since issue 18
    assert resolve_methods("all") == list(METHODS.values())


def test_a_runner_defaults_to_its_registered_options():
    for method in METHODS.values():
        params = inspect.signature(method.runner).parameters
        for key, value in method.defaults.items():
            if key in params and params[key].default is not inspect.Parameter.empty:
                assert params[key].default == value, (method.name, key)
    # a runner taking **options (AutoLangevin's per-score runners) gets the registered ones filled in
    assert hasattr(METHODS["langevin_exact"].runner, "__wrapped__")
    seen = {}

    def fake(model, split, **options):
        seen.update(options)
    assert with_defaults(fake, {"num_steps": 3}, "fake")(None, None, lr=1.0) is None
    assert seen == {"num_steps": 3, "lr": 1.0}


def test_a_registered_default_that_disagrees_with_the_runner_is_refused():
    def run_toy(model, split, *, num_steps=10):
        return None
    with pytest.raises(TypeError, match=r"toy: registered defaults disagree with run_toy's own: num_steps=5 "
                                        r"\(signature 10\)"):
        register("toy", "toy", defaults={"num_steps": 5})(run_toy)
    with pytest.raises(TypeError, match=r"toy: run_toy takes no options \['lr'\]"):
        register("toy", "toy", defaults={"lr": 0.1})(run_toy)
    assert "toy" not in METHODS


def test_the_fit_commands_guides_are_the_registered_recipes():
    """Each recipe belongs to the registered method that fits that guide, with the defaults of a fit from the
    model's initialisation; the variants wrapping another runner name it."""
    from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal

    from pyro_node_uq.infer import AutoLangevin, AutoLayerwise
    from pyro_node_uq.methods import fit_guides, run_langevin, run_layerwise

    recipes = fit_guides()
    assert {k: (r.guide_class, r.defaults) for k, r in recipes.items()} == {
        "autonormal": (AutoNormal, {"init_scale": 0.05}),
        "lowrank": (AutoLowRankMultivariateNormal, {"init_scale": 0.05}),
        "langevin": (AutoLangevin, {"init_scale": 3e-3}),
        "layerwise": (AutoLayerwise, {"subset": "last_layer"})}
    owner = {m.guide.name: m.name for m in METHODS.values() if m.guide is not None}
    assert owner == {"autonormal": "autonormal", "lowrank": "lowrank", "langevin": "langevin_learned",
                     "layerwise": "layerwise_last"}
    assert recipes["autonormal"].options({"init_scale": 0.1}) == {"init_scale": 0.1}
    for score in ("learned", "exact", "hybrid"):
        assert METHODS[f"langevin_{score}"].wraps is run_langevin and METHODS[f"langevin_{score}"].sets == ("score",)
    assert METHODS["layerwise_first"].wraps is run_layerwise and METHODS["map"].wraps is None


def test_a_recipe_builds_its_guide_with_the_overrides():
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer.autoguide import AutoNormal, init_to_value

    from pyro_node_uq.methods import GuideRecipe

    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    guide = GuideRecipe("n", AutoNormal, {"init_scale": 0.05}).build(model, init_to_value(values={"x": torch.tensor(2.0)}))
    guide()
    assert float(guide.locs.x.detach()) == 2.0 and float(guide.scales.x.detach()) == pytest.approx(0.05)
    pyro.clear_param_store()
    other = GuideRecipe("n", AutoNormal, {"init_scale": 0.05}).build(model, init_to_value(values={"x": torch.tensor(2.0)}),
                                                                     {"init_scale": 0.3})
    other()
    assert float(other.scales.x.detach()) == pytest.approx(0.3)
