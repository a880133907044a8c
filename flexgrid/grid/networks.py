"""Loading pandapower networks: built-ins by name, pandapower JSON files, MATPOWER cases.

`load_net` always returns a fresh, balanced (positive-sequence) pandapower net, so that the
caller may change it freely. Three-phase nets are reduced to their positive-sequence
equivalent: pandapower's line data (`r_ohm_per_km`, `x_ohm_per_km`) already are the
positive-sequence values, and every asymmetric load or static generator becomes a balanced one
whose power is the sum of its three phases. Phase unbalance is therefore not modelled.

Thermal ratings of `case33bw`. Baran & Wu's feeder comes without line ratings (pandapower sets
`max_i_ka = 99999`), so no line could ever congest. FlexGrid rates it by a stated rule
(`case33bw_ratings`):

- every line, the five open ties included, gets the ampacity of the standard overhead conductor
  whose resistance per km is nearest to its own (in log scale), from pandapower's standard line
  types (aluminium-steel conductors of DIN EN 50182 / DIN 48204, 105-645 A). At the nominal peak
  these lines are at most 73 % loaded: case33bw is a voltage-limited feeder;
- the feeder head (line 0, from the substation bay to bus 1) is limited by its bay (breaker,
  current transformers and overcurrent setting) to `CASE33BW_FEEDER_BAY_KA` = 205 A, i.e. 4.5 MVA
  at 12.66 kV. This is an assumption, stated: it is chosen just below the 210 A the nominal peak
  draws, so that the evening peak of the shipped daily profile (load at 0.98-1.0 of nominal,
  18:30-19:30) congests the feeder head by up to 2.6 %, while an hourly average of that peak
  (0.97) stays within it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn

from flexgrid.errors import InputError

CASE33BW_FEEDER_BAY_KA = 0.205


def case33bw_ratings(net: pp.pandapowerNet) -> pp.pandapowerNet:
    """Give case33bw's lines the thermal ratings stated in the module docstring (in place)."""
    types = pp.available_std_types(net, "line")
    ohl = types[types["type"] == "ol"].drop_duplicates(subset=["r_ohm_per_km", "max_i_ka"])
    log_r = np.log(ohl["r_ohm_per_km"].to_numpy(dtype=float))
    amps = ohl["max_i_ka"].to_numpy(dtype=float)
    for idx, r in net.line["r_ohm_per_km"].items():
        net.line.at[idx, "max_i_ka"] = float(amps[int(np.argmin(np.abs(log_r - np.log(float(r)))))])
    head = net.line.index[(net.line.from_bus == net.ext_grid.bus.iloc[0]) & net.line.in_service]
    net.line.loc[head, "max_i_ka"] = CASE33BW_FEEDER_BAY_KA
    return net


def _case33bw() -> pp.pandapowerNet:
    return case33bw_ratings(pn.case33bw())


def _cigre_mv() -> pp.pandapowerNet:
    return pn.create_cigre_network_mv(with_der="pv_wind")


def _ieee_european_lv() -> pp.pandapowerNet:
    return pn.ieee_european_lv_asymmetric("on_peak_566")


KERBER_SEED = 0  # pandapower draws the kerber nets' house-connection cable types with `random`


def _kerber_dorfnetz() -> pp.pandapowerNet:
    """pandapower's Kerber village net, the same in every process.

    pandapower chooses each house connection's cable type at random (`random.random()`, unseeded),
    so two processes built different nets, with different grid-model hashes and clearings. The
    draw is made from a fixed seed; the caller's `random` state is left as it was.
    """
    state = random.getstate()
    try:
        random.seed(KERBER_SEED)
        return pn.create_kerber_dorfnetz()
    finally:
        random.setstate(state)


BUILTIN_NETS: dict[str, Callable[[], pp.pandapowerNet]] = {
    "case33bw": _case33bw,
    "cigre_mv": _cigre_mv,
    "cigre_lv": pn.create_cigre_network_lv,
    "kerber_dorfnetz": _kerber_dorfnetz,
    "mv_oberrhein": pn.mv_oberrhein,
    "ieee_european_lv": _ieee_european_lv,
    "case118": pn.case118,
}

_CACHE: dict[str, pp.pandapowerNet] = {}


def reduce_to_balanced(net: pp.pandapowerNet) -> pp.pandapowerNet:
    """Replace asymmetric loads and generators by balanced ones carrying the sum of the phases."""
    for table, target in (("asymmetric_load", "load"), ("asymmetric_sgen", "sgen")):
        elements = getattr(net, table, None)
        if elements is None or len(elements) == 0:
            continue
        for idx, row in elements.iterrows():
            p_mw = float(row.p_a_mw + row.p_b_mw + row.p_c_mw)
            q_mvar = float(row.q_a_mvar + row.q_b_mvar + row.q_c_mvar)
            create = pp.create_load if target == "load" else pp.create_sgen
            create(
                net,
                bus=int(row.bus),
                p_mw=p_mw,
                q_mvar=q_mvar,
                name=f"{table} {idx} (balanced)",
                in_service=bool(row.in_service),
                scaling=float(row.get("scaling", 1.0)),
            )
        elements.drop(elements.index, inplace=True)
    return net


def load_net(name_or_path: str | Path) -> pp.pandapowerNet:
    """A pandapower net: a built-in name (see `BUILTIN_NETS`), a pandapower JSON file, or a
    MATPOWER case (`.m` or `.mat`, read with matpowercaseframes through pandapower's converter).

    Raises `InputError` (field `net`) for an unknown name, a missing file or an unreadable one.
    """
    key = str(name_or_path)
    if key in BUILTIN_NETS:
        if key not in _CACHE:
            _CACHE[key] = reduce_to_balanced(BUILTIN_NETS[key]())
        return copy.deepcopy(_CACHE[key])
    path = Path(key)
    if not path.exists():
        raise InputError(
            "net",
            f"{key!r} is neither a built-in net ({', '.join(sorted(BUILTIN_NETS))}) nor an existing file",
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            net = pp.from_json(str(path))
        elif suffix in (".m", ".mat"):
            from pandapower.converter.matpower import from_mpc

            net = from_mpc(str(path))
        else:
            raise InputError("net", f"{key!r}: unknown file type {suffix!r} (use .json, .m or .mat)")
    except InputError:
        raise
    except Exception as exc:  # the readers raise many kinds; the user needs the file and the cause
        raise InputError("net", f"cannot read {key!r}: {exc}") from exc
    if not isinstance(net, pp.pandapowerNet) or len(net.bus) == 0:
        raise InputError("net", f"{key!r} holds no buses")
    return reduce_to_balanced(net)
