"""Seeded trials: true states drawn around the forecast, noisy meter readings, estimates.

The truth in a trial is the AC power flow of loads (and generation) drawn around the forecast
with the pseudo-measurements' relative standard deviation, so that the stated uncertainty of
the estimate can be checked against the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flexgrid.errors import InputError
from flexgrid.monitoring.estimation import estimate, residual_correlation, workspace
from flexgrid.monitoring.measurements import (
    MeasurementSet,
    Meter,
    PseudoConfig,
    Source,
    meter_channels,
    pseudo_measurements,
    simulate_readings,
)
from flexgrid.monitoring.network import BoolArray, ComplexArray, FloatArray, NetworkModel
from flexgrid.monitoring.powerflow import solve_batch
from flexgrid.monitoring.threads import single_blas_thread


def sample_injections(
    model: NetworkModel,
    n_scenarios: int,
    rng: np.random.Generator,
    *,
    load_sigma_rel: float = 0.3,
    gen_sigma_rel: float = 0.5,
    load_scale: float | FloatArray = 1.0,
    gen_scale: float | FloatArray = 1.0,
    correlation: float = 0.0,
) -> ComplexArray:
    """Complex injections (n_bus, K) with independent (or, with `correlation`, partly common)
    Gaussian relative errors around the scaled forecast; generation is clipped at zero."""
    if n_scenarios <= 0:
        raise InputError("n_scenarios", f"must be positive, got {n_scenarios}")
    if not 0.0 <= correlation < 1.0:
        raise InputError("correlation", f"must be in [0, 1), got {correlation}")
    n = model.n_bus
    common = rng.standard_normal((1, n_scenarios))
    e_load = np.sqrt(correlation) * common + np.sqrt(1 - correlation) * rng.standard_normal((n, n_scenarios))
    e_q = np.sqrt(correlation) * common + np.sqrt(1 - correlation) * rng.standard_normal((n, n_scenarios))
    common_g = rng.standard_normal((1, n_scenarios))
    e_gen = np.sqrt(correlation) * common_g + np.sqrt(1 - correlation) * rng.standard_normal((n, n_scenarios))
    ls = np.asarray(load_scale, dtype=float)
    gs = np.asarray(gen_scale, dtype=float)
    lp = ls * model.load_p_pu[:, None] * (1 + load_sigma_rel * e_load)
    lq = ls * model.load_q_pu[:, None] * (1 + load_sigma_rel * e_q)
    gp = np.clip(gs * model.gen_p_pu[:, None] * (1 + gen_sigma_rel * e_gen), 0.0, None)
    gq = gs * model.gen_q_pu[:, None] * (1 + gen_sigma_rel * e_gen)
    return np.asarray((gp - lp) + 1j * (gq - lq), dtype=np.complex128)


@dataclass(frozen=True)
class TrialResult:
    """Per-trial figures of `run_trials` (arrays of length n_trials)."""

    worst_error_pu: FloatArray  # max over buses of |V_est - V_true|
    rmse_pu: FloatArray
    forecast_rmse_pu: FloatArray  # RMSE of a plain power flow on the forecast
    forecast_worst_error_pu: FloatArray
    coverage: FloatArray  # share of buses with |error| <= 2σ
    gross_detected: BoolArray  # the channel with the gross error was removed
    gross_rmse_pu: FloatArray  # RMSE after bad-data processing of the corrupted set
    gross_channel: np.ndarray  # index of the corrupted channel (-1 if none)
    detectable_share: FloatArray  # share of meter channels whose gross error is detectable and identifiable
    estimate_seconds: float  # mean wall time of one clean estimate
    abs_error_pu: FloatArray  # (n_trials, n_bus) |V_est - V_true| of the clean estimates

    def summary(self) -> dict[str, float]:
        clean = float(np.mean(self.rmse_pu))
        out = {
            "trials": float(self.rmse_pu.size),
            "worst_error_p95_pu": float(np.percentile(self.worst_error_pu, 95)),
            "rmse_pu": float(np.sqrt(np.mean(self.rmse_pu**2))),
            "forecast_rmse_pu": float(np.sqrt(np.mean(self.forecast_rmse_pu**2))),
            "better_than_forecast_share": float(np.mean(self.rmse_pu < self.forecast_rmse_pu)),
            "coverage_2sigma": float(np.mean(self.coverage)),
            "estimate_ms": 1e3 * self.estimate_seconds,
        }
        if np.any(self.gross_channel >= 0):
            sel = self.gross_channel >= 0
            out["gross_detected_share"] = float(np.mean(self.gross_detected[sel]))
            out["gross_rmse_ratio"] = float(np.mean(self.gross_rmse_pu[sel]) / clean)
            out["detectable_channel_share"] = float(np.mean(self.detectable_share))
        return out


@single_blas_thread
def run_trials(
    model: NetworkModel,
    meters: Sequence[Meter],
    n_trials: int,
    seed: int,
    *,
    pseudo: PseudoConfig | None = None,
    gross_error_sigma: float | None = None,
    detectable_only: bool = True,
    max_residual_correlation: float = 0.9,
    load_scale: float = 1.0,
    gen_scale: float = 1.0,
) -> TrialResult:
    """Seeded estimation trials. With `gross_error_sigma`, each trial also corrupts one random
    meter channel by that many σ (among channels where such an error is detectable, i.e.
    whose minimal detectable error is at most that size, unless `detectable_only` is False)
    and records whether bad-data processing removes it. "Detectable" means the minimal detectable
    error (99 % power) is at most that size and the channel is identifiable: its residual
    correlation with every removable measurement is below `max_residual_correlation` (else the
    largest normalised residual test cannot tell the two apart)."""
    import time

    cfg = pseudo or PseudoConfig()
    rng = np.random.default_rng(seed)
    s_true = sample_injections(
        model, n_trials, rng, load_sigma_rel=cfg.load_sigma_rel, gen_sigma_rel=cfg.gen_sigma_rel,
        load_scale=load_scale, gen_scale=gen_scale,
    )
    truth = solve_batch(model, s_true)
    forecast = solve_batch(model, model.s_injection_pu(load_scale, gen_scale)).v[:, 0]
    vm_fc = np.abs(forecast)
    channels = meter_channels(model, meters)
    ps = pseudo_measurements(
        model, load_scale * model.load_p_pu, load_scale * model.load_q_pu,
        gen_scale * model.gen_p_pu, gen_scale * model.gen_q_pu, cfg,
    )
    ws = workspace(model)
    worst = np.zeros(n_trials)
    rmse = np.zeros(n_trials)
    fc_rmse = np.zeros(n_trials)
    fc_worst = np.zeros(n_trials)
    cover = np.zeros(n_trials)
    detected = np.zeros(n_trials, dtype=bool)
    g_rmse = np.zeros(n_trials)
    g_chan = np.full(n_trials, -1)
    det_share = np.zeros(n_trials)
    elapsed = 0.0
    abs_err = np.zeros((n_trials, model.n_bus))
    for k in range(n_trials):
        vt = truth.v[:, k]
        vm_t = np.abs(vt)
        ms = MeasurementSet.concat([simulate_readings(model, channels, vt, rng), ps])
        t0 = time.perf_counter()
        est = estimate(model, ms, workspace=ws, v0=forecast)
        elapsed += time.perf_counter() - t0
        err = np.abs(est.vm_pu - vm_t)
        abs_err[k] = err
        worst[k] = err.max()
        rmse[k] = np.sqrt(np.mean(err**2))
        fc_err = np.abs(vm_fc - vm_t)
        fc_rmse[k] = np.sqrt(np.mean(fc_err**2))
        fc_worst[k] = fc_err.max()
        cover[k] = np.mean(err <= 2 * est.vm_std_pu)
        if gross_error_sigma is None:
            continue
        mde = est.minimal_detectable_error_sigma()
        kept = np.array(est.kept_index)
        meter_pos = np.flatnonzero(kept < channels.size)
        rho = np.abs(residual_correlation(model, ms.subset(np.isin(np.arange(ms.size), kept)), est.v))
        np.fill_diagonal(rho, 0.0)
        rho[:, ms.source[kept] == Source.VIRTUAL] = 0.0  # never removed, so never confused
        qualifies = (mde[meter_pos] <= gross_error_sigma) & (rho[meter_pos].max(axis=1) < max_residual_correlation)
        ok = kept[meter_pos][qualifies] if detectable_only else kept[meter_pos]
        det_share[k] = np.mean(qualifies) if meter_pos.size else 0.0
        if ok.size == 0:
            continue
        i = int(rng.choice(ok))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        bad = ms.with_value(i, ms.value[i] + sign * gross_error_sigma * ms.sigma[i])
        est_bad = estimate(model, bad, workspace=ws, v0=forecast)
        g_chan[k] = i
        detected[k] = i in est_bad.removed_index
        g_rmse[k] = np.sqrt(np.mean((est_bad.vm_pu - vm_t) ** 2))
    return TrialResult(
        worst, rmse, fc_rmse, fc_worst, cover, detected, g_rmse, g_chan, det_share, elapsed / n_trials, abs_err
    )
