"""SolveCache: each of its caches stays within its limits."""
import pytest
import torch

from pyro_node_uq.distributions.solve_cache import SolveCache


def test_grids_hold_the_last_entries_and_never_large_ones():
    cache = SolveCache(grid_entries=2, grid_max_elements=4)
    computed = []

    def compute(key, n):
        return lambda: computed.append(key) or (key, torch.zeros(n))

    for key in ("a", "b", "a", "c", "a"):  # the hit on "a" does not keep it: "c" pushes it out
        cache.grid(key, compute(key, 3))
    assert computed == ["a", "b", "c", "a"] and list(cache.grids) == ["c", "a"]  # first in, first out
    big = cache.grid("big", compute("big", 5))
    assert big[0] == "big" and "big" not in cache.grids and len(cache.grids) == 2
    assert cache.grid("none", lambda: ("none", None))[0] == "none" and "none" in cache.grids  # no inputs: held


def test_runner_waits_compiles_once_and_bounds_what_it_holds():
    cache = SolveCache(compile_after=3, compiled_entries=2)
    made = []

    def eager():
        return "eager"

    def compile(fn):
        made.append(fn)
        return lambda: "compiled"

    assert cache.runner("k", False, eager, compile) is eager and not cache.counts
    got = [cache.runner("k", "auto", eager, compile)() for _ in range(4)]
    assert got == ["eager", "eager", "compiled", "compiled"] and len(made) == 1
    for key in ("k2", "k3"):
        assert cache.runner(key, True, eager, compile)() == "compiled"
    assert list(cache.compiled) == ["k2", "k3"]  # the oldest dropped beyond compiled_entries
    for i in range(20):
        cache.runner(("shape", i), "auto", eager, compile)
    assert len(cache.counts) <= 4 * cache.compiled_entries
    cache.hold_compiled("k2", eager)  # a failed compile: the eager function is held in its place
    assert cache.runner("k2", True, eager, compile) is eager


def test_script_waits_for_its_uses_and_holds_the_result():
    cache = SolveCache(script_after=2)
    made = []

    def fn():
        return 1

    def make(f):
        made.append(f)
        return "scripted"

    assert cache.script(fn, make) is fn
    assert cache.script(fn, make) == "scripted" == cache.script(fn, make) and made == [fn]
    cache.clear()
    assert not (cache.grids or cache.compiled or cache.counts or cache.scripted or cache.uses)


def test_check_once_skips_only_the_same_unchanged_tensor():
    cache, seen = SolveCache(checked_entries=2, grid_max_elements=10), []
    t = torch.zeros(3)
    cache.check_once(t, "t", seen.append)
    cache.check_once(t, "t", seen.append)
    assert len(seen) == 1
    cache.check_once(t, "x", seen.append)  # another argument name: checked
    t.add_(1.0)  # changed in place: checked again
    cache.check_once(t, "t", seen.append)
    cache.check_once(t[1:], "t", seen.append)  # a view of other layout: checked
    cache.check_once(torch.zeros(11), "t", seen.append)  # too large to hold: always checked
    cache.check_once(torch.zeros(2, requires_grad=True), "t", seen.append)  # needs a gradient: always checked
    assert len(seen) == 6 and len(cache.checked) == 2

    def fail(_):
        raise ValueError("bad data")

    held = list(cache.checked)
    with pytest.raises(ValueError, match="bad data"):
        cache.check_once(torch.ones(2), "t", fail)
    assert list(cache.checked) == held  # a failed check is not remembered
