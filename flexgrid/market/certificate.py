"""The optimality certificate of a clearing: the conic program, its primal and dual solution,
the objective and the prices, serialised canonically and hashed for the chain.

`verify` needs no solver: it checks the primal residuals, that the duals lie in the dual cones
and satisfy stationarity (`c + A'z = 0`), the relative duality gap (<= 1e-6), that the stated
objective is `c'x`, and recomputes the DLMPs from the balance duals (on a reduced network, those of
the nodes that were solved, `price_nodes`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from flexgrid.errors import InputError
from flexgrid.opf.conic import ConicModel, KKTReport, Solution, check_kkt
from flexgrid.trading.merkle import keccak256

PRICE_DECIMALS = 6
CERTIFICATE_VERSION = 1


def _floats(values: Any) -> list[float]:
    out: list[float] = np.asarray(values, dtype=float).ravel().tolist()  # Python floats, as float(v) gives
    return out


@dataclass(frozen=True)
class Certificate:
    """Everything an auditor needs to check a clearing's optimality and prices."""

    doc: dict[str, Any]

    @classmethod
    def from_model(cls, model: ConicModel, sol: Solution, *, round_id: int, formulation: str, pricing: str,
                   base_mva: float, slot_h: float, n_node: int, slot_count: int, balance_group: str,
                   per_node_balance: bool, dlmp_eur_per_mwh: np.ndarray, inputs_hash: str,
                   mip_gap: float | None, price_nodes: np.ndarray | None = None) -> Certificate:
        """`n_node` is the node count of the problem solved. When it was solved on a reduced network
        (`flexgrid.grid.reduction`), `price_nodes` gives the full network's node of each of its nodes and
        `dlmp_eur_per_mwh` holds the prices of every node of the full network: those at `price_nodes`
        are checked against the duals, the others (buses with nothing connected) are derived from them
        by the reduction."""
        groups = []
        for g in model.groups:
            coo = g.a.tocoo()
            order = np.lexsort((coo.col, coo.row))
            groups.append({
                "name": g.name, "kind": g.kind, "cone_dim": int(g.cone_dim), "rows": int(g.a.shape[0]),
                "i": coo.row[order].tolist(), "j": coo.col[order].tolist(),
                "v": _floats(coo.data[order]), "b": _floats(g.b),
            })
        doc = {
            "version": CERTIFICATE_VERSION,
            "round_id": int(round_id),
            "formulation": formulation,
            "pricing": pricing,
            "inputs_hash": inputs_hash,
            "base_mva": float(base_mva),
            "slot_h": float(slot_h),
            "n_node": int(n_node),
            "slot_count": int(slot_count),
            "balance_group": balance_group,
            "per_node_balance": bool(per_node_balance),
            "n": int(model.n),
            "c": _floats(model.cost()),
            "groups": groups,
            "x": _floats(sol.x),
            "z": {name: _floats(v) for name, v in sorted(sol.z.items())},
            "objective": float(sol.objective),
            "mip_gap": None if mip_gap is None else float(mip_gap),
            "dlmp_eur_per_mwh": [[round(v, PRICE_DECIMALS) for v in row]
                                 for row in np.asarray(dlmp_eur_per_mwh, dtype=float).tolist()],
        }
        if price_nodes is not None:  # only then, so that certificates of unreduced clearings stay what they were
            doc["price_nodes"] = [int(v) for v in price_nodes]
        return cls(doc)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, floats in Python's shortest round-trip form."""
        return json.dumps(self.doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Certificate:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("certificate", f"not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != CERTIFICATE_VERSION:
            raise InputError("certificate.version", f"expected version {CERTIFICATE_VERSION}")
        return cls(doc)

    def hash(self) -> str:
        """`0x` keccak256 of the canonical JSON: the certificate hash committed on chain."""
        return "0x" + keccak256(self.to_json().encode()).hex()


def _prices(d: dict[str, Any], zb: np.ndarray) -> np.ndarray:
    # the same arithmetic as DispatchProblem.dlmp, so that the prices are bit for bit the engine's
    scale = -1.0 / (float(d["base_mva"]) * float(d["slot_h"]))
    t_count, n_node = int(d["slot_count"]), int(d["n_node"])
    if d["per_node_balance"]:
        return np.asarray((zb * scale).reshape(t_count, n_node).T)
    return np.repeat((zb * scale)[None, :], n_node, 0)


def dlmp_from_duals(cert: Certificate) -> np.ndarray:
    """The DLMPs (node x slot, EUR/MWh, unrounded) recomputed from the certificate's balance duals."""
    d = cert.doc
    try:
        prices = _prices(d, np.asarray(d["z"][d["balance_group"]], dtype=float))
        if "price_nodes" not in d:
            return prices
        full = np.asarray(d["dlmp_eur_per_mwh"], dtype=float).copy()  # eliminated nodes: as stated
        full[np.asarray(d["price_nodes"], dtype=np.int64)] = prices
        return full
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError("certificate", f"malformed: {exc}") from exc


def assignment_from_certificate(cert: Certificate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offer entry, request entry, MW) of every offer-to-request assignment variable, sorted by
    (offer entry, request entry), read from the `offer_cover` and `request_cover` rows: an assignment
    has +1 in its offer's `offer_cover` row and -1 in its request's `request_cover` row."""
    d = cert.doc
    empty = np.zeros(0, dtype=np.int64)
    try:
        groups = {str(g["name"]): g for g in d["groups"]}
        if "offer_cover" not in groups or "request_cover" not in groups:
            return empty, empty, np.zeros(0)
        oc, rq = groups["offer_cover"], groups["request_cover"]
        offer_of = {int(j): int(i) for i, j, v in zip(oc["i"], oc["j"], oc["v"], strict=True) if float(v) > 0}
        request_of = {int(j): int(i) for i, j, v in zip(rq["i"], rq["j"], rq["v"], strict=True) if float(v) < 0}
        x = np.asarray(d["x"], dtype=float)
        cols = sorted(offer_of.keys() & request_of.keys(), key=lambda j: (offer_of[j], request_of[j]))
        return (np.array([offer_of[j] for j in cols], dtype=np.int64),
                np.array([request_of[j] for j in cols], dtype=np.int64), x[np.array(cols, dtype=np.int64)])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError("certificate", f"malformed: {exc}") from exc


@dataclass(frozen=True)
class Verification:
    ok: bool
    kkt: KKTReport
    objective_error: float
    max_price_error_eur_per_mwh: float
    reasons: tuple[str, ...]


def verify(cert: Certificate, *, tol_feas: float = 1e-6, tol_gap: float = 1e-6) -> Verification:
    """Check a certificate without a solver (see the module docstring)."""
    d = cert.doc
    try:
        n = int(d["n"])
        c = np.asarray(d["c"], dtype=float)
        x = np.asarray(d["x"], dtype=float)
        groups = []
        z: dict[str, np.ndarray] = {}
        for g in d["groups"]:
            a = sp.csr_matrix((np.asarray(g["v"], dtype=float), (np.asarray(g["i"], dtype=np.int64),
                               np.asarray(g["j"], dtype=np.int64))), shape=(int(g["rows"]), n))
            groups.append((str(g["name"]), str(g["kind"]), a, np.asarray(g["b"], dtype=float), int(g["cone_dim"])))
            z[str(g["name"])] = np.asarray(d["z"][g["name"]], dtype=float)
            if len(z[str(g["name"])]) != int(g["rows"]):
                raise InputError(f"certificate.z.{g['name']}", "has the wrong length")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("certificate", f"malformed: {exc}") from exc
    if len(c) != n or len(x) != n:
        raise InputError("certificate.x", f"expected {n} values")
    kkt = check_kkt(c, groups, x, z, tol_feas=tol_feas, tol_gap=tol_gap)
    reasons = list(kkt.reasons)
    obj = float(c @ x)
    obj_err = abs(obj - float(d["objective"])) / max(1.0, abs(obj))
    if obj_err > 1e-9:
        reasons.append(f"stated objective {d['objective']} is not c'x = {obj}")
    prices = _prices(d, z[d["balance_group"]])
    stated = np.asarray(d["dlmp_eur_per_mwh"], dtype=float)
    if "price_nodes" in d:  # a reduced network: the solved nodes' rows of the full table
        try:
            stated = stated[np.asarray(d["price_nodes"], dtype=np.int64)]
        except (IndexError, TypeError, ValueError) as exc:
            raise InputError("certificate.price_nodes", f"malformed: {exc}") from exc
    if stated.shape != prices.shape:
        reasons.append(f"price table has shape {stated.shape}, expected {prices.shape}")
        price_err = math.inf
    else:
        price_err = float(np.max(np.abs(np.round(prices, PRICE_DECIMALS) - stated), initial=0.0))
        if price_err > 10 ** -PRICE_DECIMALS:
            reasons.append(f"stated DLMPs differ from the duals by up to {price_err:.6g} EUR/MWh")
    return Verification(not reasons, kkt, obj_err, price_err, tuple(reasons))
