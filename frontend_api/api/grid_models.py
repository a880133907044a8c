"""Grid models a DSO uploads: checked with the `flexgrid.grid` loader (the same reader as
`flexgrid clear --net FILE`), the branch view and its radiality check, then kept as the canonical
pandapower JSON of the loaded net under its grid-model hash.

A pandapower JSON file names the Python classes to rebuild (`_module`/`_class`); an upload may
only name pandapower, pandas and numpy types, so that reading it cannot import anything else."""

from __future__ import annotations

import json
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandapower as pp

from flexgrid.errors import InputError
from flexgrid.grid import BUILTIN_NETS, GridView, build_view, load_net
from flexgrid.store.grid_models import check_json_types

GridFormat = Literal["pandapower", "matpower"]
MAX_UPLOAD_CHARS = 5_000_000
MAX_BUSES = 5_000
_SUFFIX = {"pandapower": ".json", "matpower": ".m"}


@dataclass(frozen=True)
class CheckedModel:
    """An upload that passed every check."""

    net: pp.pandapowerNet
    view: GridView
    grid_model_hash: str
    net_json: str  # canonical pandapower JSON of the loaded net


def _check_types(value: Any) -> None:
    """Refuse types outside pandapower, pandas and numpy (`flexgrid.store.grid_models`)."""
    check_json_types(value, "content")


def check_upload(name: str, source_format: GridFormat, content: str, *, require_radial: bool = True) -> CheckedModel:
    """Parse and check an uploaded grid model; `InputError` naming `content` (or `format`) says
    what is wrong: not parseable, no slack, unfed buses, meshed, too many buses."""
    if len(content) > MAX_UPLOAD_CHARS:
        raise InputError("content", f"is {len(content):,} characters, at most {MAX_UPLOAD_CHARS:,} are accepted")
    if source_format == "pandapower":
        try:
            doc = json.loads(content)
        except ValueError as exc:
            raise InputError("content", f"is not JSON: {exc}") from None
        except RecursionError:
            raise InputError("content", "is nested too deeply") from None
        if not isinstance(doc, dict):
            raise InputError("content", "must be a pandapower net as a JSON object")
        _check_types(doc)
    with tempfile.TemporaryDirectory(prefix="flexgrid-grid-") as tmp:
        path = Path(tmp) / f"upload{_SUFFIX[source_format]}"
        path.write_text(content, encoding="utf-8")
        try:
            net = load_net(path)
        except InputError as exc:
            raise InputError("content", f"cannot be read as a {source_format} net: "
                             + exc.reason.replace(repr(str(path)), repr(name)).replace(str(path), name)) from None
        except Exception as exc:  # the readers raise many kinds
            raise InputError("content", f"cannot be read as a {source_format} net: {type(exc).__name__}: "
                             + str(exc).replace(str(path), name)[:300]) from None
    if not isinstance(net, pp.pandapowerNet):
        raise InputError("content", f"is not a pandapower net ({type(net).__name__})")
    buses = len(net.bus)
    if buses > MAX_BUSES:
        raise InputError("content", f"has {buses:,} buses, at most {MAX_BUSES:,} are accepted")
    try:  # what is stored is what the hash covers: check and hash the net as read back from its JSON
        net_json = pp.to_json(net)
        stored = pp.from_json_string(net_json)
    except Exception as exc:
        raise InputError("content", f"the net cannot be stored as pandapower JSON: {type(exc).__name__}") from None
    try:
        view = build_view(stored, name)
    except InputError as exc:
        raise InputError("content", exc.reason) from None
    except Exception as exc:  # pandapower's power-flow setup on malformed tables
        raise InputError("content", f"pandapower cannot build the branch model: {type(exc).__name__}: "
                         f"{str(exc)[:300]}") from None
    if require_radial and not view.is_radial:
        raise InputError("content", f"is not radial: {view.radial_reason} (set require_radial to false "
                         "to keep a meshed net; it then clears with dc or copperplate only)")
    return CheckedModel(net=stored, view=view, grid_model_hash=view.model_hash(), net_json=net_json)


_cache: OrderedDict[str, tuple[pp.pandapowerNet, GridView]] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 8


def stored_net(grid_model_hash: str, net_json: str) -> tuple[pp.pandapowerNet, GridView]:
    """The net and view of a stored upload (a few kept in memory); a fresh copy of the net."""
    import copy

    with _cache_lock:
        hit = _cache.get(grid_model_hash)
        if hit is not None:
            _cache.move_to_end(grid_model_hash)
            return copy.deepcopy(hit[0]), hit[1]
    net = pp.from_json_string(net_json)
    view = build_view(net, grid_model_hash[:10])
    with _cache_lock:
        _cache[grid_model_hash] = (net, view)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return copy.deepcopy(net), view


def remember(grid_model_hash: str, net: pp.pandapowerNet, view: GridView) -> None:
    """Keep a just-checked upload in memory (choosing or validating it next needs no parsing)."""
    import copy

    with _cache_lock:
        _cache[grid_model_hash] = (copy.deepcopy(net), view)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def content_digest(source_format: str, content: str) -> str:
    """sha256 of an upload as sent: the same file again is recognised without parsing it."""
    import hashlib

    return hashlib.sha256(f"{source_format}\n{content}".encode()).hexdigest()


def is_builtin(model: str) -> bool:
    return model in BUILTIN_NETS


def builtin_net(model: str) -> tuple[pp.pandapowerNet, GridView]:
    net = load_net(model)
    return net, build_view(net, model)
