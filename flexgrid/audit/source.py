"""Source verification: does the chain run the published contract source?

The auditor recompiles the contract sources with py-solc-x (`solcx.compile_standard`), using the
project's solc shim as the binary and the exact compiler settings recorded in the shipped
artifact's metadata (which are forge's settings), and compares the runtime bytecode with the code
deployed at the market's addresses:

- immutable variables (EIP-712's cached domain separator, the token address, ...) are written
  into the runtime code at deployment, so their byte ranges, known from the compiler output's
  `immutableReferences`, are masked on both sides;
- the CBOR metadata tail (its length is in the last two bytes) holds the IPFS hash of the
  metadata JSON, which covers every source file's keccak256 and the settings: the executable part
  is compared without it, and the tail is compared on its own, so a report can say "same code,
  but the sources differ in comments" apart from "different code".

Every source file's keccak256 is also checked against the artifact's metadata, so that a changed
file is named. This module only computes; reading the chain and the files happens in
`audit_deployment`, which takes them as arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_utils import keccak

from flexgrid.errors import FlexGridError


class SourceVerificationError(FlexGridError):
    """The sources could not be assembled or compiled for verification."""


@dataclass(frozen=True)
class SourceCheck:
    """The verdict for one deployed contract."""

    contract: str
    address: str
    code_matches: bool
    metadata_matches: bool
    changed_sources: tuple[str, ...] = field(default_factory=tuple)
    missing_sources: tuple[str, ...] = field(default_factory=tuple)
    detail: str = ""

    @property
    def verified(self) -> bool:
        """The deployed code is exactly what the sources compile to (metadata included)."""
        return self.code_matches and self.metadata_matches and not self.changed_sources

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "address": self.address,
            "verified": self.verified,
            "code_matches": self.code_matches,
            "metadata_matches": self.metadata_matches,
            "changed_sources": list(self.changed_sources),
            "missing_sources": list(self.missing_sources),
            "detail": self.detail,
        }


def split_metadata(code: bytes) -> tuple[bytes, bytes]:
    """Split runtime code into (executable part, CBOR metadata tail).

    solc appends CBOR-encoded metadata followed by its length as a big-endian uint16. Code
    without a plausible tail is returned whole with an empty tail.
    """
    if len(code) < 2:
        return code, b""
    tail_len = int.from_bytes(code[-2:], "big") + 2
    if tail_len > len(code) or code[-tail_len] & 0xE0 != 0xA0:  # a CBOR map starts with 0xa_
        return code, b""
    return code[:-tail_len], code[-tail_len:]


def mask_immutables(code: bytes, immutable_references: Mapping[str, Sequence[Mapping[str, int]]]) -> bytes:
    """Zero the byte ranges where the constructor wrote immutable values."""
    masked = bytearray(code)
    for refs in immutable_references.values():
        for ref in refs:
            start, length = int(ref["start"]), int(ref["length"])
            if start + length > len(masked):
                raise SourceVerificationError(
                    f"immutable reference at {start}+{length} lies outside code of {len(masked)} bytes"
                )
            masked[start : start + length] = bytes(length)
    return bytes(masked)


def compare_runtime(
    deployed: bytes, compiled: bytes, immutable_references: Mapping[str, Sequence[Mapping[str, int]]]
) -> tuple[bool, bool]:
    """Return (executable code matches, metadata tail matches)."""
    if len(deployed) != len(compiled):
        deployed_exec, deployed_meta = split_metadata(deployed)
        compiled_exec, compiled_meta = split_metadata(compiled)
        return False, deployed_meta == compiled_meta
    masked_deployed = mask_immutables(deployed, immutable_references)
    masked_compiled = mask_immutables(compiled, immutable_references)
    deployed_exec, deployed_meta = split_metadata(masked_deployed)
    compiled_exec, compiled_meta = split_metadata(masked_compiled)
    return deployed_exec == compiled_exec, deployed_meta == compiled_meta


def _metadata(artifact: Mapping[str, Any]) -> dict[str, Any]:
    raw = artifact.get("rawMetadata") or artifact.get("metadata")
    if raw is None:
        raise SourceVerificationError("artifact has no compiler metadata (rawMetadata)")
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def standard_input_from_metadata(
    artifact: Mapping[str, Any], source_root: Path
) -> tuple[dict[str, Any], str, str, tuple[str, ...], tuple[str, ...]]:
    """Assemble a solc standard-JSON input from the files under `source_root`.

    The list of sources, their expected keccak256 and the compiler settings come from the
    artifact's metadata. Returns (input, source unit, contract name, changed files, missing files).
    """
    meta = _metadata(artifact)
    settings = dict(meta["settings"])
    target = settings.pop("compilationTarget")
    (unit, name), = target.items()
    sources: dict[str, dict[str, str]] = {}
    changed: list[str] = []
    missing: list[str] = []
    for path, info in sorted(meta["sources"].items()):
        file = source_root / path
        if not file.is_file():
            missing.append(path)
            continue
        content = file.read_bytes()
        if "0x" + keccak(content).hex().removeprefix("0x") != info["keccak256"]:
            changed.append(path)
        sources[path] = {"content": content.decode("utf-8")}
    if missing:
        return {}, unit, name, tuple(changed), tuple(missing)
    settings["outputSelection"] = {
        unit: {name: ["evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences", "metadata"]}
    }
    std_input = {"language": meta.get("language", "Solidity"), "sources": sources, "settings": settings}
    return std_input, unit, name, tuple(changed), tuple(missing)


def compile_runtime(
    std_input: Mapping[str, Any], unit: str, name: str, solc_binary: Path, source_root: Path
) -> tuple[bytes, dict[str, list[dict[str, int]]]]:
    """Compile with py-solc-x and return (runtime bytecode, immutable references)."""
    key = json.dumps(std_input, sort_keys=True)
    return _compile_cached(key, unit, name, str(solc_binary), str(source_root))


@lru_cache(maxsize=32)
def _compile_cached(
    std_input_json: str, unit: str, name: str, solc_binary: str, source_root: str
) -> tuple[bytes, dict[str, list[dict[str, int]]]]:
    # The same input always compiles to the same output, so one process compiles it once.
    import solcx  # imported here: only the auditor needs it

    try:
        output = solcx.compile_standard(
            json.loads(std_input_json), solc_binary=solc_binary, base_path=source_root, allow_paths=[source_root]
        )
    except Exception as exc:  # solcx raises its own SolcError with the compiler's message
        raise SourceVerificationError(f"compiling {unit}:{name} failed: {exc}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SourceVerificationError(f"compiling {unit}:{name} failed: {errors[0].get('formattedMessage')}")
    evm = output["contracts"][unit][name]["evm"]["deployedBytecode"]
    return bytes.fromhex(evm["object"]), dict(evm.get("immutableReferences", {}))


def verify_contract(
    contract: str,
    address: str,
    deployed_code: bytes,
    artifact: Mapping[str, Any],
    source_root: Path,
    solc_binary: Path,
) -> SourceCheck:
    """Recompile one contract from `source_root` and compare it with `deployed_code`."""
    if not deployed_code:
        return SourceCheck(contract, address, False, False, detail="no code at this address")
    std_input, unit, name, changed, missing = standard_input_from_metadata(artifact, source_root)
    if missing:
        return SourceCheck(
            contract, address, False, False, changed, missing,
            detail=f"{len(missing)} source file(s) missing under {source_root}",
        )
    compiled, refs = compile_runtime(std_input, unit, name, solc_binary, source_root)
    code_ok, meta_ok = compare_runtime(deployed_code, compiled, refs)
    if code_ok and meta_ok:
        detail = "runtime bytecode and metadata match the source"
    elif code_ok:
        detail = "executable code matches; metadata differs (sources differ in comments or settings)"
    else:
        detail = "deployed code differs from what the source compiles to"
    if changed:
        detail += f"; {len(changed)} source file(s) differ from the published build"
    return SourceCheck(contract, address, code_ok, meta_ok, changed, missing, detail)


# Which artifact each address of a `Deployment` runs.
DEPLOYMENT_CONTRACTS: dict[str, str] = {
    "token": "FlexToken",
    "registry": "FlexRegistry",
    "market": "FlexMarket",
    "settlement": "FlexMarketSettlement",
}


def repo_root() -> Path:
    """The source tree FlexGrid was installed from (contracts/, node_modules/, tools/)."""
    return Path(__file__).resolve().parents[2]


def audit_deployment(
    code_at: Mapping[str, bytes],
    addresses: Mapping[str, str],
    artifacts: Mapping[str, Mapping[str, Any]],
    source_root: Path,
    solc_binary: Path,
) -> list[SourceCheck]:
    """Verify every contract of a deployment.

    `addresses` maps a role (`token`, `registry`, `market`, ...) to its address, `code_at` maps
    an address to the code read from the chain, `artifacts` maps a contract name to its shipped
    artifact (for the compiler settings and the list of sources).
    """
    checks: list[SourceCheck] = []
    for role, address in sorted(addresses.items()):
        name = DEPLOYMENT_CONTRACTS.get(role)
        if name is None:
            continue
        if name not in artifacts:
            raise SourceVerificationError(f"no artifact for {name} (the {role} contract)")
        checks.append(verify_contract(name, address, code_at[address], artifacts[name], source_root, solc_binary))
    return checks
