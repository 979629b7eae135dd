"""Method options checked before a run: values against the type of their default (by hand), keys through the
``**options`` a runner passes on, and a registered variant's options found through ``Method.wraps``."""
import pytest

from pyro_node_uq.compare.options import (
    FIXED,
    MAX_LR,
    check_method_options,
    check_value,
    signature_defaults,
)
from pyro_node_uq.methods import METHODS, Method, register


@pytest.mark.parametrize("key, value, default", [("num_steps", 3, 10), ("lr", 0.5, 0.1), ("lr", 1, 0.1),
                                                 ("subset", "x", "last_layer"), ("hidden", (4, 4), (32,)),
                                                 ("flag", False, True), ("k", 0, 5), ("anything", object(), None)])
def test_values_of_the_defaults_type_are_accepted(key, value, default):
    check_value(key, value, default)


@pytest.mark.parametrize("key, value, default, error, match", [
    ("num_steps", 0, 10, ValueError, "num_steps: expected an integer >= 1, got 0"),
    ("k", -1, 5, ValueError, "k: expected an integer >= 0, got -1"),
    ("num_steps", 2.0, 10, TypeError, r"num_steps: expected an integer, got 2.0 \(float\)"),
    ("num_steps", True, 10, TypeError, "expected an integer"),
    ("lr", "fast", 0.1, TypeError, r"lr: expected a number, got 'fast' \(str\)"),
    ("lr", 2.0, 0.1, ValueError, rf"lr: expected a learning rate in \(0, {MAX_LR:g}\]"),
    ("step_size", float("inf"), 0.1, ValueError, "step_size: expected a finite number > 0, got inf"),
    ("init_scale", 0.0, 0.1, ValueError, "init_scale: expected a finite number > 0, got 0.0"),
    ("lr", float("nan"), 0.1, ValueError, "lr: got NaN"),
    ("flag", 1, True, TypeError, "flag: expected True or False"),
    ("subset", 3, "last_layer", TypeError, "subset: expected a string"),
    ("hidden", 4, (32,), TypeError, r"hidden: expected a tuple, e.g. \(32, 32\)")])
def test_values_of_another_type_are_refused_by_name(key, value, default, error, match):
    with pytest.raises(error, match=match):
        check_value(key, value, default)


def test_keys_are_followed_through_the_options_a_runner_passes_on():
    """run_map passes **options to fit_svi: its keys are run_map's, but those the chain fills in itself."""
    accepted = signature_defaults(METHODS["map"].runner, exclude=FIXED)
    assert {"num_steps", "lr", "subsample_size"} <= set(accepted)
    assert not {"guide", "loss", "model", "seed"} & set(accepted)


def test_a_registered_variant_has_the_options_of_the_runner_it_wraps_but_those_it_sets():
    learned = signature_defaults(METHODS["langevin_learned"].runner, exclude=FIXED)
    assert {"num_iters", "step_size", "init_scale"} <= set(learned) and "score" not in learned
    last = signature_defaults(METHODS["layerwise_last"].runner, exclude=FIXED)
    assert "num_steps" in last and "subset" not in last


def _toy_runner(model, split, *, mode="a", num_steps=10, lr=0.1):
    return None


@pytest.fixture
def variants():
    def run(model, split, **options):
        return _toy_runner(model, split, mode="b", **options)

    def run_open(model, split, **options):
        return _toy_runner(model, split, mode="c", **options)

    register(Method("toy_variant", run, "a variant", wraps=_toy_runner, sets=("mode",)))
    register(Method("toy_open", run_open, "a variant that does not say what it wraps"))
    yield
    del METHODS["toy_variant"], METHODS["toy_open"]


def test_a_variant_is_checked_through_the_runner_it_names(variants):
    variant = METHODS["toy_variant"]
    check_method_options(variant, {"num_steps": 3, "lr": 0.5})
    with pytest.raises(ValueError, match=r"toy_variant.mode: toy_variant has no option 'mode'; its options are "
                                         r"\['lr', 'num_steps'\]"):
        check_method_options(variant, {"mode": "c"})
    with pytest.raises(ValueError, match="toy_variant.num_steps: expected an integer"):
        check_method_options(variant, {"num_steps": "many"})
    with pytest.raises(ValueError, match="toy_variant.seed: set by the comparison itself"):
        check_method_options(variant, {"seed": 1})
    # a wrapper that names no runner takes any key (its **options cannot be followed); values are still typed
    check_method_options(METHODS["toy_open"], {"bogus": 1})
    with pytest.raises(ValueError, match="toy_open.lr: got NaN"):
        check_method_options(METHODS["toy_open"], {"lr": float("nan")})
