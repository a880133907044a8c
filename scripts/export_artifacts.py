"""Export the contract artifacts the Python package ships (`flexgrid/chain/artifacts/<Name>.json`).

Reads forge's build output (`contracts/out`, from `forge build`) and writes, for each deployable
contract, its ABI, creation and runtime bytecode, the runtime's immutable references, the compiler
version and settings and the raw solc metadata (which lists every source file's keccak256), so
that FlexGrid deploys without a compiler and the auditor can recompile with py-solc-x and compare.

FlexMarket runs its settlement functions in FlexMarketSettlement by delegatecall (one address):
its exported ABI is the union of both ABIs, checked against the IFlexMarket interface.

Usage: `python scripts/export_artifacts.py [--out-dir DIR] [--build-dir DIR]` (`make artifacts`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Test contracts (contracts/test/harness/FlexTypesHarness) are not shipped: tests load them from
# forge's output.
DEPLOYABLE = ("FlexToken", "FlexRegistry", "FlexMarket", "FlexMarketSettlement")
# Contracts whose functions FlexMarket serves through its fallback (delegatecall).
MERGED_INTO = {"FlexMarket": ("FlexMarketSettlement",)}
INTERFACE_OF = {"FlexMarket": "IFlexMarket", "FlexRegistry": "IFlexRegistry"}


class ExportError(Exception):
    """The build output is missing or inconsistent; the message names the file and the reason."""


def _load(build_dir: Path, name: str) -> dict[str, Any]:
    path = build_dir / f"{name}.sol" / f"{name}.json"
    if not path.is_file():
        raise ExportError(f"{path} is missing: run `forge build` first")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _hex(code: dict[str, Any]) -> str:
    obj = str(code.get("object", ""))
    if code.get("linkReferences"):
        raise ExportError("library linking is not supported: the contracts must need no linking")
    return obj if obj.startswith("0x") else "0x" + obj


def _signature(entry: dict[str, Any]) -> str:
    def canon(p: dict[str, Any]) -> str:
        t = str(p["type"])
        if t.startswith("tuple"):
            return "(" + ",".join(canon(c) for c in p["components"]) + ")" + t[len("tuple") :]
        return t

    return f"{entry['type']}:{entry.get('name', '')}(" + ",".join(canon(p) for p in entry.get("inputs", [])) + ")"


def _merge_abi(primary: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {_signature(e) for e in primary}
    merged = list(primary)
    for entry in extra:
        if entry["type"] in ("constructor", "fallback", "receive"):
            continue
        sig = _signature(entry)
        if sig not in seen:
            seen.add(sig)
            merged.append(entry)
    return merged


def _check_interface(name: str, abi: list[dict[str, Any]], interface_abi: list[dict[str, Any]]) -> None:
    have = {_signature(e) for e in abi if e["type"] == "function"}
    missing = sorted(_signature(e) for e in interface_abi if e["type"] == "function" and _signature(e) not in have)
    if missing:
        raise ExportError(f"{name} does not serve these {INTERFACE_OF[name]} functions: {missing}")


def export(build_dir: Path, out_dir: Path) -> list[Path]:
    """Write one JSON per deployable contract; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in DEPLOYABLE:
        data = _load(build_dir, name)
        abi: list[dict[str, Any]] = list(data["abi"])
        for other in MERGED_INTO.get(name, ()):
            abi = _merge_abi(abi, _load(build_dir, other)["abi"])
        if name in INTERFACE_OF:
            _check_interface(name, abi, _load(build_dir, INTERFACE_OF[name])["abi"])
        raw_metadata = data.get("rawMetadata")
        if not raw_metadata:
            raise ExportError(f"{name}: forge output has no rawMetadata")
        metadata = json.loads(raw_metadata)
        artifact = {
            "contractName": name,
            "abi": abi,
            "bytecode": _hex(data["bytecode"]),
            "deployedBytecode": _hex(data["deployedBytecode"]),
            "immutableReferences": data["deployedBytecode"].get("immutableReferences", {}),
            "compiler": {"version": metadata["compiler"]["version"], "settings": metadata["settings"]},
            "sourcePath": next(iter(metadata["settings"]["compilationTarget"])),
            "rawMetadata": raw_metadata,
        }
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "contracts" / "out")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "flexgrid" / "chain" / "artifacts")
    args = parser.parse_args(argv)
    try:
        paths = export(args.build_dir, args.out_dir)
    except ExportError as exc:
        print(f"export_artifacts: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        data = json.loads(path.read_text())
        size = (len(data["deployedBytecode"]) - 2) // 2
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(data['abi'])} ABI entries, runtime {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
