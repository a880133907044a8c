"""The ABIs and bytecode FlexGrid ships (`flexgrid/chain/artifacts/*.json`), and revert decoding.

The artifacts are forge's JSON output (`abi`, `bytecode`, `deployedBytecode`), exported by
`make artifacts`; running FlexGrid needs no compiler.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from flexgrid.errors import ChainError, ContractRevert

# `FLEXGRID_ARTIFACTS_DIR` points FlexGrid at other artifacts (e.g. a fresh `forge build`).
ARTIFACTS_DIR = Path(
    os.environ.get("FLEXGRID_ARTIFACTS_DIR") or Path(__file__).resolve().parent / "artifacts"
)


@dataclass(frozen=True)
class Artifact:
    """One contract's ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # creation code, 0x hex
    deployed_bytecode: str  # runtime code, 0x hex


def _code(value: Any) -> str:
    code = value.get("object", "") if isinstance(value, dict) else (value or "")
    return code if code.startswith("0x") else "0x" + code


@cache
def load_artifact(name: str, folder: Path = ARTIFACTS_DIR) -> Artifact:
    """Load `<folder>/<name>.json`; raises `ChainError` naming the file when it is missing."""
    path = folder / f"{name}.json"
    if not path.is_file():
        raise ChainError(f"contract artifact {path} is missing: run `make artifacts`")
    data = json.loads(path.read_text())
    return Artifact(
        name=name,
        abi=list(data["abi"]),
        bytecode=_code(data.get("bytecode")),
        deployed_bytecode=_code(data.get("deployedBytecode")),
    )


def available_artifacts(folder: Path = ARTIFACTS_DIR) -> list[str]:
    """Names of the shipped artifacts."""
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def abi_type(param: dict[str, Any]) -> str:
    """The canonical ABI type of an ABI parameter: tuples spelled out, e.g. `(uint256,address)[]`."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def abi_signature(item: dict[str, Any]) -> str:
    """`Name(type,...)` of an ABI event, error or function: what its topic or selector hashes."""
    return f"{item['name']}({','.join(abi_type(p) for p in item.get('inputs', []))})"


@cache
def error_table(folder: Path = ARTIFACTS_DIR) -> dict[bytes, tuple[str, list[str], list[str]]]:
    """selector -> (error name, argument names, argument types) over all shipped ABIs."""
    table: dict[bytes, tuple[str, list[str], list[str]]] = {
        # Solidity's built-in Error(string) and Panic(uint256)
        bytes.fromhex("08c379a0"): ("Error", ["message"], ["string"]),
        bytes.fromhex("4e487b71"): ("Panic", ["code"], ["uint256"]),
    }
    for name in available_artifacts(folder):
        for item in load_artifact(name, folder).abi:
            if item.get("type") != "error":
                continue
            types = [abi_type(p) for p in item.get("inputs", [])]
            selector = bytes(keccak(text=abi_signature(item)))[:4]
            table[selector] = (str(item["name"]), [str(p.get("name", "")) for p in item["inputs"]], types)
    return table


def _plain(value: Any, kind: str = "") -> Any:
    if kind == "address" and isinstance(value, str):
        return str(to_checksum_address(value))
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def decode_revert(data: str | bytes | None, folder: Path = ARTIFACTS_DIR) -> ContractRevert:
    """Turn revert data into `ContractRevert(error_name, args)`; unknown data is kept as hex."""
    raw = data if isinstance(data, bytes) else bytes.fromhex((data or "0x").removeprefix("0x"))
    if len(raw) < 4:
        return ContractRevert("UnknownRevert", (), "reverted without a reason")
    entry = error_table(folder).get(raw[:4])
    if entry is None:
        return ContractRevert("UnknownRevert", ("0x" + raw.hex(),))
    name, arg_names, types = entry
    try:
        values = tuple(_plain(v, t) for v, t in zip(abi_decode(types, raw[4:]), types, strict=True))
    except Exception:  # malformed data for a known selector
        return ContractRevert(name, ("0x" + raw[4:].hex(),))
    described = ", ".join(f"{n}={v!r}" for n, v in zip(arg_names, values, strict=True))
    return ContractRevert(name, values, f"reverted with {name}({described})")


__all__ = [
    "ARTIFACTS_DIR",
    "Artifact",
    "abi_signature",
    "abi_type",
    "available_artifacts",
    "decode_revert",
    "error_table",
    "load_artifact",
]
