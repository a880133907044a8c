"""Models of the test nets, built once per worker (the nets come from `flexgrid.grid.load_net`).

Shared by the monitoring and risk test packages: each conftest imports these fixtures."""

from __future__ import annotations

from collections.abc import Iterator

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
