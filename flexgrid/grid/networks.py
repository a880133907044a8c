"""Loading pandapower networks: built-ins by name, pandapower JSON files, MATPOWER cases.

`load_net` always returns a fresh, balanced (positive-sequence) pandapower net, so that the
caller may change it freely. Three-phase nets are reduced to their positive-sequence
equivalent: pandapower's line data (`r_ohm_per_km`, `x_ohm_per_km`) already are the
positive-sequence values, and every asymmetric load or static generator becomes a balanced one
whose power is the sum of its three phases. Phase unbalance is therefore not modelled.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pandapower as pp
import pandapower.networks as pn

from flexgrid.errors import InputError


def _cigre_mv() -> pp.pandapowerNet:
    return pn.create_cigre_network_mv(with_der="pv_wind")


def _ieee_european_lv() -> pp.pandapowerNet:
    return pn.ieee_european_lv_asymmetric("on_peak_566")


BUILTIN_NETS: dict[str, Callable[[], pp.pandapowerNet]] = {
    "case33bw": pn.case33bw,
    "cigre_mv": _cigre_mv,
    "cigre_lv": pn.create_cigre_network_lv,
    "kerber_dorfnetz": pn.create_kerber_dorfnetz,
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
