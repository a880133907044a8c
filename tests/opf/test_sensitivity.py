"""The sensitivity formulation: a successive LP against an exact AC power flow (flexgrid.opf.sensitivity)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flexgrid.errors import InputError
from flexgrid.grid import build_view, load_net
from flexgrid.market import clear_market, verify
from flexgrid.opf.radial import ComplexArray
from flexgrid.opf.sensitivity import I_FROM, I_TO, V_MIN, RadialAC
from flexgrid.trading import Direction, Order, Side
from tests.market.helpers import grid, offer, p2p, profiles, request, round_config

SLOTS = 3


def _orders(name: str, seed: int = 1) -> list[Order]:
    _, view = grid(name)
    buses = sorted(int(b) for b in view.bus_of_node[view.bus_of_node >= 0])
    rng = random.Random(seed)
    scale = 0.05 if name == "ieee_european_lv" else 1.0
    out: list[Order] = [
        offer(f"o{i}", rng.choice(buses), round(rng.uniform(20, 90), 2), round(rng.uniform(5, 50) * scale, 3),
              tuple(range(SLOTS)), direction=Direction.UP if i % 3 else Direction.DOWN) for i in range(24)]
    out.append(request("r", buses[len(buses) // 2], round(20 * scale, 3), 300.0, (1,)))
    out += [p2p("sell", buses[2], Side.SELL, round(30 * scale, 3), 20.0), p2p("buy", buses[-1], Side.BUY,
                                                                            round(20 * scale, 3), 150.0)]
    return out


@pytest.mark.parametrize("name", ["case33bw", "cigre_mv"])
def test_converges_to_an_ac_exact_clearing_that_matches_the_exact_socp(name: str) -> None:
    net, _ = grid(name)
    rc = round_config(slots=SLOTS, name=name)
    prof = profiles(rc, name=name)
    orders = _orders(name)
    socp = clear_market(net, prof, rc, orders, formulation="socp", ac_validation=False, certificate=False)
    assert socp.relaxation_gap_mw is not None and socp.relaxation_gap_mw < 1e-6  # the SOCP is exact here
    out = clear_market(net, prof, rc, orders, formulation="sensitivity")
    assert out.dispatch is not None and 2 <= int(out.dispatch.extra["iterations"]) <= 10  # type: ignore[call-overload]
    assert out.ac is not None and out.ac.max_v_error_pu is not None and out.ac.max_v_error_pu <= 1e-6
    assert out.ac.ok and out.violations == []
    assert out.objective_eur == pytest.approx(socp.objective_eur, rel=5e-3)
    assert out.accepted  # something clears, and the DLMPs are the SOCP's up to the iteration's tolerance
    np.testing.assert_allclose(out.dlmp_eur_per_mwh, socp.dlmp_eur_per_mwh, atol=0.05)
    total = sum(out.components.values())
    np.testing.assert_allclose(total, out.dlmp_eur_per_mwh, atol=1e-6)
    assert np.abs(out.components["losses"]).max() > 0.01  # loss factors price the feeder's losses
    assert out.certificate is not None and verify(out.certificate).ok


def test_a_binding_current_limit_is_priced_and_kept_in_ac() -> None:
    net, _ = grid()
    rc = round_config()
    prof = profiles(rc, load=1.3)
    alone = clear_market(net, prof, rc, [], formulation="sensitivity", ac_slots=[1])
    assert any(v.kind == "thermal" for v in alone.violations) and alone.ac is not None and not alone.ac.ok
    orders = [offer("end", 17, 150.0, 1000.0, (0, 1, 2, 3)), offer("mid", 30, 140.0, 1000.0, (0, 1, 2, 3))]
    out = clear_market(net, prof, rc, orders, formulation="sensitivity")
    assert out.violations == []
    assert out.ac is not None and out.ac.ok  # nothing beyond its limit in pandapower's AC power flow
    assert out.ac.max_loading_percent == pytest.approx(100.0, abs=0.01)  # the feeder head's limit binds
    assert out.components["congestion"][:, 1].max() > 10.0
    np.testing.assert_allclose(sum(out.components.values()), out.dlmp_eur_per_mwh, atol=1e-6)
    socp = clear_market(net, prof, rc, orders, formulation="socp", ac_validation=False, certificate=False)
    assert out.objective_eur == pytest.approx(socp.objective_eur, rel=5e-3)


def test_an_infeasible_grid_reports_its_soft_violations() -> None:
    net, _ = grid()
    rc = round_config(slots=2)
    out = clear_market(net, profiles(rc, load=2.0), rc, [offer("a", 17, 100.0, 50.0)], formulation="sensitivity",
                       ac_slots=[0])
    assert any(x.kind == "thermal" for x in out.violations)
    v = max((x for x in out.violations if x.unit == "pu"), key=lambda x: x.amount)
    assert (v.kind, v.element) == ("v_min", "bus 17") and v.amount > 0.01
    assert out.ac is not None and not out.ac.ok
    assert out.ac.max_v_error_pu is not None and out.ac.max_v_error_pu <= 1e-6  # violated, but exactly as in AC


def test_the_same_orders_in_any_order_clear_the_same() -> None:
    net, _ = grid()
    rc = round_config(slots=SLOTS)
    prof = profiles(rc)
    orders = _orders("case33bw", seed=3)
    first = clear_market(net, prof, rc, orders, formulation="sensitivity", ac_validation=False, certificate=False)
    rng = random.Random(0)
    for _ in range(3):
        shuffled = orders[:]
        rng.shuffle(shuffled)
        again = clear_market(net, prof, rc, shuffled, formulation="sensitivity", ac_validation=False,
                             certificate=False)
        assert again.merkle_root == first.merkle_root and again.trades == first.trades


def test_a_meshed_network_is_refused_naming_the_formulation() -> None:
    net = load_net("cigre_mv")
    net.switch["closed"] = True
    view = build_view(net)
    rc = round_config(slots=1, name="cigre_mv")
    with pytest.raises(InputError) as err:
        clear_market(net, profiles(rc, name="cigre_mv"), rc, [], formulation="sensitivity", view=view,
                     check_grid_hash=False)
    assert err.value.field == "formulation" and "radial" in err.value.reason


@pytest.mark.parametrize("name", ["case33bw", "cigre_mv"])
def test_sensitivities_are_the_derivatives_of_the_ac_power_flow(name: str) -> None:
    """Import (1 + loss factor), |V|^2 and |I|^2 sensitivities against central finite differences."""
    _, view = grid(name)
    ac = RadialAC(view)
    rc = round_config(slots=2, name=name)
    prof = profiles(rc, name=name)
    s_mva: ComplexArray = prof.load_p_mw - prof.pv_p_mw + 1j * prof.load_q_mvar
    w = s_mva / view.base_mva
    v = ac.flow(w)
    assert ac.mismatch(v, w) < 1e-9
    node = int(view.to_node[-1])
    k = int(np.argmax(ac.currents2(v)[0][:, 1]))
    kinds = np.array([V_MIN, I_FROM, I_TO])
    a, sens = ac.sensitivities(v, kinds, np.array([node, k, k]), np.array([1, 1, 1]))
    h = 1e-6
    for i in (node, int(view.to_node[0])):
        up, dn = w.copy(), w.copy()
        up[i, 1] += h
        dn[i, 1] -= h
        vu, vd = ac.flow(up), ac.flow(dn)
        fd_import = (ac.slack_import(vu, up) - ac.slack_import(vd, dn))[0, 1] / (2 * h)
        assert a[i, 1] == pytest.approx(fd_import, rel=1e-6)
        assert a[i, 1] > 1.0  # withdrawing there costs its losses too
        fd_v = (abs(vu[node, 1]) ** 2 - abs(vd[node, 1]) ** 2) / (2 * h)
        assert sens[0, i] == pytest.approx(fd_v, rel=1e-5, abs=1e-9)
        for row, end in ((1, 0), (2, 1)):
            fd_i = (ac.currents2(vu)[end][k, 1] - ac.currents2(vd)[end][k, 1]) / (2 * h)
            assert sens[row, i] == pytest.approx(fd_i, rel=1e-5, abs=1e-9)


def test_the_oracle_refuses_it_for_on_chain_rounds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from flexgrid.oracle.service import OracleSettings

    with pytest.raises(InputError) as err:
        OracleSettings(results_dir=tmp_path, formulation="sensitivity")
    assert err.value.field == "formulation" and "socp" in err.value.reason
    assert OracleSettings(results_dir=tmp_path).formulation == "socp"
