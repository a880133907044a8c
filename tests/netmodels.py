"""Models of the test nets, built once per worker (the nets come from `flexgrid.grid.load_net`).

Shared by the monitoring and risk test packages: each conftest imports these fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pandapower as pp
import pytest
from threadpoolctl import threadpool_limits

from flexgrid.grid import load_net
from flexgrid.monitoring.network import NetworkModel, build_model


@pytest.fixture(scope="package", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """Small dense matrices: BLAS threads only wait on each other on a shared machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def case33bw() -> NetworkModel:
    return build_model(load_net("case33bw"), "case33bw")


@pytest.fixture(scope="session")
def kerber() -> NetworkModel:
    return build_model(load_net("kerber_dorfnetz"), "kerber_dorfnetz")


@pytest.fixture(scope="session")
def cigre_mv() -> NetworkModel:
    return build_model(load_net("cigre_mv"), "cigre_mv")


def cigre_mv_two_grids_net() -> pp.pandapowerNet:
    """cigre_mv fed by two substations: the transformer of feeder 2 (buses 12-14) is moved to a
    second 110 kV bus with its own external grid; the tie line 14 (bus 8 - bus 14) stays open."""
    net = load_net("cigre_mv")
    hv2 = pp.create_bus(net, vn_kv=110.0, name="Bus 0b (second HV/MV substation)")
    net.trafo.at[1, "hv_bus"] = hv2
    sw = net.switch[(net.switch.et == "t") & (net.switch.element == 1)].index
    net.switch.loc[sw, "bus"] = hv2
    pp.create_ext_grid(net, hv2, vm_pu=1.03, va_degree=0.0, name="External grid 2")
    return net


@pytest.fixture(scope="session")
def cigre_mv_two_grids() -> NetworkModel:
    return build_model(cigre_mv_two_grids_net(), "cigre_mv_two_grids")


@pytest.fixture(scope="session")
def mv_oberrhein() -> NetworkModel:
    return build_model(load_net("mv_oberrhein"), "mv_oberrhein")
