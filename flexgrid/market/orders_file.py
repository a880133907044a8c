"""The orders file of `flexgrid clear`: a round, wholesale prices, requests, offers, P2P orders
and (optionally) devices, as one JSON document. Parsing is pure: the caller reads the file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flexgrid.errors import FlexGridError, InputError
from flexgrid.opf.devices import Battery, CurtailablePV, Devices, EVCharger, ShiftableLoad
from flexgrid.trading import FlexOffer, FlexRequest, P2POrder, RoundConfig

Order = FlexRequest | FlexOffer | P2POrder


@dataclass(frozen=True)
class OrdersFile:
    round: RoundConfig
    wholesale_eur_per_mwh: float | list[float]
    orders: tuple[Order, ...]
    devices: Devices


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise InputError(key, "must be a list")
    return value


def parse_orders_file(doc: Any) -> OrdersFile:
    """Build the typed round, orders and devices; errors name the entry and the field."""
    if not isinstance(doc, dict):
        raise InputError("orders file", "must be a JSON object")
    if "round" not in doc:
        raise InputError("round", "the orders file needs the round's configuration")
    rc = RoundConfig.model_validate(doc["round"])
    wholesale = doc.get("wholesale_eur_per_mwh", 60.0)
    if not isinstance(wholesale, int | float | list):
        raise InputError("wholesale_eur_per_mwh", "must be a number or a list with one number per slot")
    if isinstance(wholesale, list) and len(wholesale) != rc.slot_count:
        raise InputError("wholesale_eur_per_mwh", f"has {len(wholesale)} values for {rc.slot_count} slots")
    orders: list[Order] = []
    for key, model in (("requests", FlexRequest), ("offers", FlexOffer), ("p2p", P2POrder)):
        for i, entry in enumerate(_list(doc, key)):
            try:
                orders.append(model.model_validate(entry))
            except InputError as exc:
                raise InputError(f"{key}[{i}].{exc.field}", exc.reason, order_id=exc.order_id) from exc
    dev = doc.get("devices", {}) or {}
    kinds = {"batteries": Battery, "shiftable": ShiftableLoad, "pv": CurtailablePV, "evs": EVCharger}
    built: dict[str, tuple[Any, ...]] = {}
    for key, cls in kinds.items():
        items = []
        for i, entry in enumerate(dev.get(key, [])):
            try:
                if key == "pv":
                    entry = {**entry, "available_mw": tuple(entry.get("available_mw", ()))}
                items.append(cls(**entry))
            except TypeError as exc:
                raise InputError(f"devices.{key}[{i}]", str(exc)) from exc
            except FlexGridError:
                raise
        built[key] = tuple(items)
    return OrdersFile(rc, wholesale, tuple(orders), Devices(**built))
