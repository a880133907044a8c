"""The radial power flow's tree solves: the path matrix (shallow trees) and the triangular factorisation
(deep trees) give the same power flow."""

from __future__ import annotations

import numpy as np
import pytest

from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.opf import radial


@pytest.mark.parametrize("name", ["ieee_european_lv", "case33bw"])
def test_path_matrix_and_triangular_factor_give_the_same_power_flow(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net = load_net(name)
    view = build_view(net, name)
    prof = synthetic_profiles(net, view, slot_start_s=17 * 3600, slot_seconds=3600, slot_count=3, load_scale=1.0)
    w = np.asarray((prof.load_p_mw - prof.pv_p_mw + 1j * prof.load_q_mvar) / view.base_mva, dtype=np.complex128)
    monkeypatch.setattr(radial, "PATH_ENTRIES_PER_BRANCH", 10**9)
    by_path = radial.RadialAC(view)
    monkeypatch.setattr(radial, "PATH_ENTRIES_PER_BRANCH", 0)
    by_lu = radial.RadialAC(view)
    assert by_path.path is not None and by_lu.path is None
    rhs = np.asarray(np.arange(view.n_branch * 2).reshape(view.n_branch, 2) * (1 - 0.5j), dtype=np.complex128)
    for trans in (False, True):
        assert np.max(np.abs(by_path._solve(rhs, trans) - by_lu._solve(rhs, trans))) < 1e-9 * np.max(np.abs(rhs))
    v_path, v_lu = by_path.flow(w), by_lu.flow(w)
    assert by_lu.mismatch(v_lu, w) < 1e-9
    assert np.max(np.abs(v_path - v_lu)) < 1e-10
