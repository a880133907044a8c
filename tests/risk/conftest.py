"""Fixtures of this package: the shared net models (tests/netmodels.py)."""

from tests.netmodels import _one_blas_thread, case33bw, cigre_mv, cigre_mv_two_grids, kerber, mv_oberrhein

__all__ = ["_one_blas_thread", "case33bw", "cigre_mv", "cigre_mv_two_grids", "kerber", "mv_oberrhein"]
