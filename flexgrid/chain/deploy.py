"""Deploy FlexToken, FlexRegistry and FlexMarket from the shipped artifacts (docs/contracts.md)."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict
from web3 import Web3

from flexgrid.chain.artifacts import load_artifact
from flexgrid.chain.transact import TxSender
from flexgrid.errors import ChainError, InputError
from flexgrid.trading.eip712 import Eip712Domain


class Deployment(BaseModel):
    """Where FlexGrid's contracts live on one chain; saved and loaded as JSON."""

    model_config = ConfigDict(frozen=True)

    chain_id: int
    token: str
    registry: str
    market: str
    block_number: int  # block of the first deployment transaction (the indexer starts here)
    deployer: str
    operator: str

    @property
    def domain(self) -> Eip712Domain:
        """The EIP-712 domain of the market."""
        return Eip712Domain(chain_id=self.chain_id, verifying_contract=self.market)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        try:
            return cls.model_validate(json.loads(Path(path).read_text()))
        except FileNotFoundError as exc:
            raise InputError("deployment", f"no deployment file at {path}") from exc
        except (ValueError, TypeError) as exc:
            raise InputError("deployment", f"{path} is not a deployment file: {exc}") from exc

    def check_code(self, w3: Web3) -> None:
        """Raise `ChainError` if the chain is another one or a contract has no code there."""
        chain_id = int(w3.eth.chain_id)
        if chain_id != self.chain_id:
            raise ChainError(f"the deployment is on chain {self.chain_id}, the node is chain {chain_id}")
        for name in ("token", "registry", "market"):
            address = getattr(self, name)
            if len(w3.eth.get_code(address)) == 0:
                raise ChainError(f"no contract code at the {name} address {address} on chain {chain_id}")


def deploy(w3: Web3, deployer: LocalAccount, *, operator: str | None = None) -> Deployment:
    """Deploy the token (owned by the deployer), the registry and the market.

    `operator` (default: the deployer) gets the operator role. Returns the addresses.
    """
    sender = TxSender(w3, deployer)
    operator_address = Web3.to_checksum_address(operator) if operator else sender.address
    token = sender.deploy(load_artifact("FlexToken"), sender.address)
    registry = sender.deploy(load_artifact("FlexRegistry"), operator_address)
    assert token.contract_address and registry.contract_address
    market = sender.deploy(load_artifact("FlexMarket"), registry.contract_address, token.contract_address)
    assert market.contract_address
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        token=token.contract_address,
        registry=registry.contract_address,
        market=market.contract_address,
        block_number=token.block_number,
        deployer=sender.address,
        operator=operator_address,
    )


__all__ = ["Deployment", "deploy"]
