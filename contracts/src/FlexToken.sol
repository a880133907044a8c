// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title FlexToken
/// @notice FlexGrid's settlement token for tests and demos: an ERC-20 with EIP-2612 permit and
/// 6 decimals (1 token = 1 EUR, base unit = 1 micro-EUR), minted by its owner.
contract FlexToken is ERC20, ERC20Permit, Ownable {
    /// @param owner_ the account allowed to mint
    constructor(address owner_) ERC20("FlexGrid Euro", "fEUR") ERC20Permit("FlexGrid Euro") Ownable(owner_) {}

    /// @notice Six decimals, like the euro stablecoins FlexGrid stands in for.
    /// @return the number of decimals
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` base units to `to` (only the owner). Emits `Transfer(0, to, amount)`.
    /// @param to the receiver
    /// @param amount base units
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
