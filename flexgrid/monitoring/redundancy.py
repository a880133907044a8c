"""Bad-data redundancy of a metering: which meter channels a gross error can be found in.

The largest normalised residual test can only find a gross error where other measurements check
the channel. With the WLS residual covariance Ω = R − H G⁻¹ Hᵀ (linearised at the forecast
operating point, pseudo-measurements and zero injections included), a gross error of e·σ_i in
channel i gives (textbook result, e.g. Abur & Expósito, ch. 5):

- a normalised residual of mean e·ρ_i in channel i, where ρ_i = sqrt(Ω_ii)/σ_i is the channel's
  redundancy (0: a *critical* measurement, no estimator can see an error in it);
- a chi-square objective with non-centrality (e·ρ_i)², which must pass the 99 % threshold first;
- in every other removable measurement j a normalised residual of mean e·ρ_i·|c_ij| with
  c_ij = Ω_ij / sqrt(Ω_ii Ω_jj); the test picks i over j with probability Φ(e·ρ_i·sqrt((1−|c_ij|)/2)),
  so |c_ij| → 1 (a *critical pair*) makes the two indistinguishable.

`bad_data_redundancy` turns these into a probability that a gross error of `gross_error_sigma` in
each meter channel is found and removed, and a status with a sentence a user can read:
"critical", "undetectable" (too weakly checked), "unidentifiable" (confused with a named partner)
or "detectable". `greedy_placement(..., bad_data_detectable=True)` adds meters until every channel
is "detectable".

Gross errors are telemetry faults of real meters. Pseudo-measurements (σ of 30–50 % of a forecast)
and zero injections are not checked here: a 15σ error on a pseudo-load is a 450 % forecast error,
which is a forecast, not a bad datum (the estimator may still remove a pseudo-measurement whose
residual is the largest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import chi2, ncx2, norm

from flexgrid.errors import InputError
from flexgrid.monitoring.estimation import _h_jac, _workspace
from flexgrid.monitoring.measurements import (
    MeasurementSet,
    Meter,
    PseudoConfig,
    Source,
    measure,
    meter_channels,
    pseudo_measurements,
)
from flexgrid.monitoring.network import FloatArray, NetworkModel
from flexgrid.monitoring.powerflow import solve_batch

Status = Literal["critical", "undetectable", "unidentifiable", "detectable"]
CRITICAL_REDUNDANCY = 1e-3  # sqrt(Ω_ii)/σ_i below this: the channel is critical (numerically)


@dataclass(frozen=True)
class ChannelCheck:
    """One meter channel: how well a gross error in it is seen and singled out."""

    label: str  # e.g. "bus 12: V", "substation: P line 0"
    meter: int  # position of its meter in the meters given
    redundancy: float  # sqrt(Ω_ii)/σ_i, 0 = critical, 1 = fully checked
    detection_probability: float  # chi-square fails and its normalised residual exceeds the threshold
    identification_probability: float  # its normalised residual is the largest
    partner: str  # the removable measurement it is most easily confused with
    partner_correlation: float  # |c_ij| with that partner
    status: Status

    @property
    def found_probability(self) -> float:
        return self.detection_probability * self.identification_probability

    def explain(self, gross_error_sigma: float) -> str:
        e = f"{gross_error_sigma:g}σ"
        if self.status == "critical":
            return (f"channel {self.label} is critical: a gross error there cannot be detected "
                    "(no other measurement checks it)")
        if self.status == "undetectable":
            return (f"channel {self.label} is too weakly checked: a {e} error there is detected in only "
                    f"{self.detection_probability:.0%} of cases (redundancy {self.redundancy:.2f})")
        if self.status == "unidentifiable":
            return (f"channel {self.label} forms a critical pair with {self.partner} (residual correlation "
                    f"{self.partner_correlation:.3f}): a {e} error is detected but found there in only "
                    f"{self.found_probability:.0%} of cases")
        return f"channel {self.label}: a {e} error is found and removed in {self.found_probability:.1%} of cases"


@dataclass(frozen=True)
class RedundancyReport:
    """Per meter channel, whether a gross error of `gross_error_sigma` can be found there."""

    gross_error_sigma: float
    required_probability: float
    dof: int
    channels: tuple[ChannelCheck, ...]

    @property
    def all_detectable(self) -> bool:
        return all(c.status == "detectable" for c in self.channels)

    def with_status(self, *status: Status) -> tuple[ChannelCheck, ...]:
        return tuple(c for c in self.channels if c.status in status)

    def detectable_index(self) -> np.ndarray:
        """Positions (in `meter_channels(model, meters)`) of the detectable channels."""
        return np.array([i for i, c in enumerate(self.channels) if c.status == "detectable"], dtype=np.int64)

    def shortfall(self) -> float:
        """Σ over channels of the missing probability (0 exactly when every channel is detectable)."""
        return float(sum(max(self.required_probability - c.found_probability, 0.0) for c in self.channels))

    def messages(self) -> list[str]:
        """One sentence per channel that is not detectable."""
        return [c.explain(self.gross_error_sigma) for c in self.channels if c.status != "detectable"]


def _check_args(gross_error_sigma: float, required_probability: float) -> None:
    if not np.isfinite(gross_error_sigma) or gross_error_sigma <= 0:
        raise InputError("gross_error_sigma", f"must be a positive number, got {gross_error_sigma!r}")
    if not 0.5 <= required_probability < 1.0:
        raise InputError("required_probability", f"must be in [0.5, 1), got {required_probability!r}")


class RedundancyEvaluator:
    """Jacobian rows of pseudo-measurements and of candidate meters at one operating point, so that
    many meterings can be judged cheaply (used by the placement)."""

    def __init__(
        self,
        model: NetworkModel,
        pseudo: PseudoConfig | None = None,
        load_scale: float = 1.0,
        gen_scale: float = 1.0,
        *,
        gross_error_sigma: float = 15.0,
        required_probability: float = 0.98,
        chi2_confidence: float = 0.99,
        lnr_threshold: float = 3.0,
        removal: Literal["meters-first", "largest"] = "meters-first",
    ) -> None:
        _check_args(gross_error_sigma, required_probability)
        self.model = model
        self.ws = _workspace(model)
        self.v = solve_batch(model, model.s_injection_pu(load_scale, gen_scale)).v[:, 0]
        ps = pseudo_measurements(
            model, load_scale * model.load_p_pu, load_scale * model.load_q_pu,
            gen_scale * model.gen_p_pu, gen_scale * model.gen_q_pu, pseudo,
        )
        _, jac = _h_jac(model, self.ws, ps, self.v)
        self.pseudo_rows = jac / ps.sigma[:, None]
        self.pseudo_labels = ps.labels
        # competitors in the identification: with "meters-first" removal a meter channel whose
        # normalised residual exceeds the threshold is removed before any pseudo-measurement
        self.pseudo_removable = (ps.source != Source.VIRTUAL) & (removal == "largest")
        self.e = float(gross_error_sigma)
        self.required = float(required_probability)
        self.chi2_confidence = chi2_confidence
        self.lnr = lnr_threshold

    def meter_rows(self, meter: Meter) -> tuple[FloatArray, tuple[str, ...]]:
        """Whitened Jacobian rows (H/σ) of one meter's channels, and their labels."""
        ch = meter_channels(self.model, [meter])
        true = measure(self.model, ch.kind, ch.element, self.v)
        sigma = ch.sigma_abs_pu + ch.sigma_rel * np.abs(true)
        ms = MeasurementSet(ch.kind, ch.element, true, sigma, np.full(ch.size, Source.METER), ch.labels)
        _, jac = _h_jac(self.model, self.ws, ms, self.v)
        return jac / sigma[:, None], ch.labels

    def report(self, rows: Sequence[FloatArray], labels: Sequence[tuple[str, ...]]) -> RedundancyReport:
        """Judge the metering whose meters have the given whitened rows and channel labels."""
        meter_rows = np.vstack(rows)
        owner = np.concatenate([np.full(len(lab), i) for i, lab in enumerate(labels)]).astype(np.int64)
        names = [lab for labs in labels for lab in labs]
        a = np.vstack([meter_rows, self.pseudo_rows])  # whitened: R = I
        m, n_state = a.shape
        g = a.T @ a
        try:
            cov = np.linalg.inv(g)
        except np.linalg.LinAlgError:
            raise InputError("meters", "the meters and pseudo-measurements do not make the grid observable") from None
        k = meter_rows.shape[0]
        omega_rows = -(a[:k] @ cov) @ a.T  # rows of Ω (whitened) for the meter channels
        omega_rows[np.arange(k), np.arange(k)] += 1.0
        diag = 1.0 - np.einsum("ij,jk,ik->i", a, cov, a)
        diag = np.clip(diag, 0.0, None)
        red = np.sqrt(diag[:k])
        dof = m - n_state
        thr = float(chi2.ppf(self.chi2_confidence, dof)) if dof > 0 else np.inf
        removable = np.concatenate([np.ones(k, dtype=bool), self.pseudo_removable])
        all_labels = names + list(self.pseudo_labels)
        mean = self.e * red
        p_det = ncx2.sf(thr, dof, mean**2) * norm.sf(self.lnr - mean) if dof > 0 else np.zeros(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.sqrt(np.where(diag > 0, diag, np.inf))
            corr = np.abs(omega_rows) / (np.maximum(red, 1e-300)[:, None] * scale[None, :])
        corr[np.arange(k), np.arange(k)] = 0.0
        corr[:, ~removable] = 0.0
        corr = np.clip(np.nan_to_num(corr), 0.0, 1.0)
        p_id = np.prod(np.where(corr > 0, norm.cdf(mean[:, None] * np.sqrt((1.0 - corr) / 2.0)), 1.0), axis=1)
        checks = []
        for i in range(k):
            if red[i] < CRITICAL_REDUNDANCY or dof <= 0:
                checks.append(ChannelCheck(names[i], int(owner[i]), float(red[i]), 0.0, 0.0, "", 1.0, "critical"))
                continue
            j = int(np.argmax(corr[i]))
            if p_det[i] < self.required:
                status: Status = "undetectable"
            elif p_det[i] * p_id[i] < self.required:
                status = "unidentifiable"
            else:
                status = "detectable"
            checks.append(ChannelCheck(names[i], int(owner[i]), float(red[i]), float(p_det[i]), float(p_id[i]),
                                       all_labels[j], float(corr[i, j]), status))
        return RedundancyReport(self.e, self.required, dof, tuple(checks))


def bad_data_redundancy(
    model: NetworkModel,
    meters: Sequence[Meter],
    *,
    pseudo: PseudoConfig | None = None,
    load_scale: float = 1.0,
    gen_scale: float = 1.0,
    gross_error_sigma: float = 15.0,
    required_probability: float = 0.98,
    chi2_confidence: float = 0.99,
    lnr_threshold: float = 3.0,
    removal: Literal["meters-first", "largest"] = "meters-first",
) -> RedundancyReport:
    """For each channel of `meters` (in `meter_channels` order): can a gross error of
    `gross_error_sigma` σ there be detected (chi-square at `chi2_confidence`, then normalised
    residual above `lnr_threshold`) and singled out, with at least `required_probability`?
    Judged at the forecast operating point with the pseudo-measurements of `pseudo`, for the
    estimator's `removal` rule (see `estimate`)."""
    if not meters:
        raise InputError("meters", "no meters given")
    ev = RedundancyEvaluator(
        model, pseudo, load_scale, gen_scale, gross_error_sigma=gross_error_sigma,
        required_probability=required_probability, chi2_confidence=chi2_confidence, lnr_threshold=lnr_threshold,
        removal=removal,
    )
    parts = [ev.meter_rows(m) for m in meters]
    return ev.report([p[0] for p in parts], [p[1] for p in parts])
