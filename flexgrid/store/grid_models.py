"""Grid models found by their grid-model hash (the `gridModelHash` a round records on chain).

A round's grid model is one of
- a built-in network (`flexgrid.grid.BUILTIN_NETS`) whose `build_view(net).model_hash()` is the hash;
- a model a DSO uploaded through the HTTP API (`POST /dso/grid-models`): the table
  `api_grid_model` (`UploadedGridModel`, defined here so that the oracle reads it without the API)
  keeps the canonical pandapower JSON of the net under its grid-model hash;
- a pandapower JSON file in a directory (`flexgrid oracle run --grid-models DIR`), named by its
  hash (`<hash>.json`, with or without `0x`) or by any name: every file is hashed, never trusted by
  its name.

Whatever the source, the net is loaded from its JSON text with `net_from_json` (the same reader
the auditor uses on the published copy) and its hash is recomputed: a model whose content does
not hash to the hash asked for is refused (`GridModelMismatch`), never used.

A pandapower JSON document names the Python classes to rebuild (`_module`/`_class`);
`check_json_types` refuses any type outside pandapower, pandas and numpy before pandapower reads
it, so that reading an upload or a publication cannot import anything else.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandapower as pp
from sqlalchemy import Column, Text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel

from flexgrid.errors import InputError
from flexgrid.grid import BUILTIN_NETS, GridView, build_view, load_net, reduce_to_balanced

ALLOWED_MODULES = ("pandapower", "pandas", "numpy")
FORBIDDEN_CLASSES = frozenset({"function", "method", "exec", "eval"})

Source = Literal["built-in", "uploaded", "directory", "published"]


class UploadedGridModel(SQLModel, table=True):
    """A grid model a DSO uploaded (pandapower JSON or MATPOWER), kept as the canonical pandapower
    JSON of the net as loaded; identified by its grid-model hash (the one rounds record on chain)."""

    __tablename__ = "api_grid_model"

    grid_model_hash: str = Field(primary_key=True)
    name: str
    source_format: str  # "pandapower" or "matpower"
    uploaded_by: str = Field(index=True)  # checksummed DSO address
    buses: int
    nodes: int
    branches: int
    radial: bool
    radial_reason: str
    net_json: str = Field(sa_column=Column(Text, nullable=False))
    content_sha256: str = Field(index=True)  # of the file as uploaded (format and text)
    uploaded_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class GridModelNotFound(InputError):
    """No built-in, uploaded or directory model has the grid-model hash asked for."""


class GridModelMismatch(InputError):
    """A model found under a grid-model hash hashes to another one."""


def check_json_types(value: Any, field: str = "content", depth: int = 0) -> None:
    """Refuse `_module`/`_class` markers outside pandapower, pandas and numpy, also inside the
    JSON strings pandapower decodes again (`_object`); `InputError` on `field`."""
    if depth > 64:
        raise InputError(field, "is nested too deeply")
    if isinstance(value, dict):
        module, cls = value.get("_module"), value.get("_class")
        if module is not None or cls is not None:
            mod = str(module or "")
            if mod.split(".")[0] not in ALLOWED_MODULES or str(cls or "") in FORBIDDEN_CLASSES:
                raise InputError(field, f"names the type {mod}.{cls}; a grid model may only hold "
                                 "pandapower, pandas and numpy types")
        for v in value.values():
            check_json_types(v, field, depth + 1)
    elif isinstance(value, list):
        for v in value:
            check_json_types(v, field, depth + 1)
    elif isinstance(value, str) and value[:1] in ("{", "[") and "_module" in value:
        try:
            inner = json.loads(value)
        except (ValueError, RecursionError):
            return
        check_json_types(inner, field, depth + 1)


def net_from_json(text: str, name: str = "grid model", field: str = "grid_model") -> pp.pandapowerNet:
    """A pandapower net from its JSON text, read as `load_net` reads a `.json` file (balanced);
    `InputError` on `field` when it is not JSON, names a foreign type or is no net."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(field, f"{name} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(field, f"{name} must be a pandapower net as a JSON object")
    check_json_types(doc, field)
    try:
        net = pp.from_json_string(text)
    except Exception as exc:  # pandapower's reader raises many kinds
        raise InputError(field, f"{name} cannot be read as a pandapower net: {type(exc).__name__}: "
                         f"{str(exc)[:300]}") from None
    if not isinstance(net, pp.pandapowerNet) or len(net.bus) == 0:
        raise InputError(field, f"{name} holds no buses")
    return reduce_to_balanced(net)


@dataclass(frozen=True)
class ResolvedGridModel:
    """A round's grid model: the net (a fresh copy), its view and hash, where it came from, and
    the pandapower JSON text it was read from (None for a built-in, which needs no publishing)."""

    net: pp.pandapowerNet
    view: GridView
    grid_model_hash: str
    source: Source
    name: str
    net_json: str | None


def model_from_json(text: str, name: str, source: Source, field: str = "grid_model") -> ResolvedGridModel:
    """Load `text` with `net_from_json` and hash it."""
    net = net_from_json(text, name, field)
    try:
        view = build_view(net, name)
    except InputError as exc:
        raise InputError(field, exc.reason) from None
    return ResolvedGridModel(net, view, view.model_hash().lower(), source, name, text)


_builtins: dict[str, ResolvedGridModel] = {}
_lock = threading.Lock()


def _builtin(name: str) -> ResolvedGridModel:
    """The built-in net `name`, loaded and hashed once per process (callers get `fresh` copies)."""
    with _lock:
        if name not in _builtins:
            net = load_net(name)
            view = build_view(net, name)
            _builtins[name] = ResolvedGridModel(net, view, view.model_hash().lower(), "built-in", name, None)
        return _builtins[name]


def builtin_by_hash(grid_model_hash: str, prefer: str | None = None) -> ResolvedGridModel | None:
    """The built-in net hashing to `grid_model_hash` (`prefer` is tried first; nets are cached)."""
    want = grid_model_hash.lower()
    names = ([prefer] if prefer in BUILTIN_NETS else []) + [n for n in sorted(BUILTIN_NETS) if n != prefer]
    for name in names:
        if _builtin(name).grid_model_hash == want:
            return fresh(_builtin(name))
    return None


def uploaded_by_hash(engine: Engine, grid_model_hash: str) -> ResolvedGridModel | None:
    """The model uploaded through the API under `grid_model_hash` (None when there is none, or the
    database has no such table); `GridModelMismatch` when its content hashes otherwise."""
    want = grid_model_hash.lower()
    try:
        with Session(engine) as session:
            row = session.get(UploadedGridModel, want)
            found = None if row is None else (row.name, row.net_json)
    except SQLAlchemyError:
        return None
    if found is None:
        return None
    model = model_from_json(found[1], f"uploaded grid model {found[0]!r}", "uploaded")
    if model.grid_model_hash != want:
        raise GridModelMismatch("grid_model_hash", f"the uploaded model stored under {want} hashes to "
                                f"{model.grid_model_hash}: refusing it")
    return model


def directory_by_hash(directory: Path, grid_model_hash: str) -> ResolvedGridModel | None:
    """The pandapower JSON file in `directory` hashing to `grid_model_hash`: `<hash>.json` first
    (`GridModelMismatch` when it hashes otherwise), then every other `*.json` file."""
    want = grid_model_hash.lower()
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("grid_models", f"{directory} is not a directory")
    named = [directory / f"{want}.json", directory / f"{want.removeprefix('0x')}.json"]
    for path in named:
        if path.is_file():
            model = model_from_json(path.read_text(encoding="utf-8"), path.name, "directory")
            if model.grid_model_hash != want:
                raise GridModelMismatch("grid_models", f"{path} is named by {want} but hashes to "
                                        f"{model.grid_model_hash}: refusing it")
            return model
    for path in sorted(directory.glob("*.json")):
        if path in named:
            continue
        try:
            model = model_from_json(path.read_text(encoding="utf-8"), path.name, "directory")
        except (InputError, OSError):
            continue  # not a readable net: it is not the one asked for
        if model.grid_model_hash == want:
            return model
    return None


def resolve_grid_model(
    grid_model_hash: str,
    *,
    engine: Engine | None = None,
    directory: Path | None = None,
    prefer_builtin: str | None = None,
) -> ResolvedGridModel:
    """The grid model whose hash is `grid_model_hash`: the built-in `prefer_builtin`, an upload in
    `engine`'s `api_grid_model` table, a file of `directory`, any other built-in, in that order.
    `GridModelNotFound` names the hash and where it was looked for; `GridModelMismatch` when a
    model stored under the hash hashes to another one."""
    want = grid_model_hash.lower()
    if prefer_builtin in BUILTIN_NETS and _builtin(prefer_builtin).grid_model_hash == want:
        return fresh(_builtin(prefer_builtin))
    if engine is not None:
        found = uploaded_by_hash(engine, want)
        if found is not None:
            return found
    if directory is not None:
        found = directory_by_hash(directory, want)
        if found is not None:
            return found
    found = builtin_by_hash(want)
    if found is not None:
        return found
    where = [f"the built-in networks ({', '.join(sorted(BUILTIN_NETS))})"]
    if engine is not None:
        where.append("the uploaded models (api_grid_model)")
    if directory is not None:
        where.append(f"the pandapower JSON files of {directory}")
    raise GridModelNotFound("grid_model_hash", f"no grid model hashes to {want}: looked in " + ", ".join(where))


def fresh(model: ResolvedGridModel) -> ResolvedGridModel:
    """The same model with its own copy of the net (callers may change it)."""
    return ResolvedGridModel(copy.deepcopy(model.net), model.view, model.grid_model_hash, model.source, model.name,
                             model.net_json)


__all__ = [
    "GridModelMismatch",
    "GridModelNotFound",
    "ResolvedGridModel",
    "UploadedGridModel",
    "builtin_by_hash",
    "check_json_types",
    "directory_by_hash",
    "fresh",
    "model_from_json",
    "net_from_json",
    "resolve_grid_model",
    "uploaded_by_hash",
]
