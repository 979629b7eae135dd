import math

from pyro_node_uq.compare.report import _headline


def _rows(langevin, normal):
    return [{"method": "autonormal", "status": "ok", "test_nll": normal},
            {"method": "langevin_learned", "status": "ok", "test_nll": langevin}]


def test_headline_says_when_the_langevin_guide_is_ahead():
    (line, blank) = _headline(_rows(-1.5, -1.2), {"quick": True})
    assert "ahead of AutoNormal" in line and "-1.500 against -1.200" in line and blank == ""


def test_headline_explains_a_trailing_guide_at_quick_budgets_only():
    quick = _headline(_rows(-1.0, -1.2), {"quick": True})[0]
    full = _headline(_rows(-1.0, -1.2), {"quick": False})[0]
    assert "trails AutoNormal" in quick and "quick budgets" in quick and "--quick" in quick
    assert "trails AutoNormal" in full and "quick" not in full


def test_headline_is_absent_without_both_rows_or_finite_scores():
    assert _headline(_rows(-1.0, -1.2)[:1], {"quick": True}) == []
    assert _headline(_rows(math.nan, -1.2), {"quick": True}) == []
    failed = [dict(r, status="failed") for r in _rows(-1.0, -1.2)]
    assert _headline(failed, {"quick": True}) == []
