// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlEnumerable} from "@openzeppelin/contracts/access/extensions/AccessControlEnumerable.sol";
import {IFlexRegistry} from "./interfaces/IFlexRegistry.sol";

/// @title FlexRegistry
/// @notice Roles of FlexGrid: the operator, per-grid DSOs and metering agents, oracles, providers.
/// @dev Providers join by operator approval (`approveProvider`), not by bond: real flexibility
/// markets (USEF, GOPACS) prequalify providers and their assets, which a bond cannot express;
/// bonds remain in the market as bid deposits and dispute bonds. ORACLE_ROLE and PROVIDER_ROLE are
/// administered by OPERATOR_ROLE, OPERATOR_ROLE by DEFAULT_ADMIN_ROLE.
contract FlexRegistry is AccessControlEnumerable, IFlexRegistry {
    /// @inheritdoc IFlexRegistry
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @inheritdoc IFlexRegistry
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    /// @inheritdoc IFlexRegistry
    bytes32 public constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");

    mapping(bytes32 gridId => address) private _dso;
    mapping(bytes32 gridId => address) private _meteringAgent;

    /// @param operator the market operator: gets DEFAULT_ADMIN_ROLE and OPERATOR_ROLE
    constructor(address operator) {
        if (operator == address(0)) revert RegistryZeroAddress("operator");
        _grantRole(DEFAULT_ADMIN_ROLE, operator);
        _grantRole(OPERATOR_ROLE, operator);
        _setRoleAdmin(ORACLE_ROLE, OPERATOR_ROLE);
        _setRoleAdmin(PROVIDER_ROLE, OPERATOR_ROLE);
    }

    /// @inheritdoc IFlexRegistry
    function setDso(bytes32 gridId, address dso) external onlyRole(OPERATOR_ROLE) {
        if (gridId == bytes32(0)) revert RegistryZeroGrid();
        address previous = _dso[gridId];
        _dso[gridId] = dso;
        emit DsoSet(gridId, previous, dso);
    }

    /// @inheritdoc IFlexRegistry
    function approveProvider(address account, bytes32 profileHash) external onlyRole(OPERATOR_ROLE) {
        if (account == address(0)) revert RegistryZeroAddress("account");
        if (hasRole(PROVIDER_ROLE, account)) revert RegistryAlreadyProvider(account);
        _grantRole(PROVIDER_ROLE, account);
        emit ProviderApproved(account, profileHash, msg.sender);
    }

    /// @inheritdoc IFlexRegistry
    function revokeProvider(address account) external onlyRole(OPERATOR_ROLE) {
        if (!hasRole(PROVIDER_ROLE, account)) revert RegistryNotProvider(account);
        _revokeRole(PROVIDER_ROLE, account);
        emit ProviderRevoked(account, msg.sender);
    }

    /// @inheritdoc IFlexRegistry
    function setMeteringAgent(bytes32 gridId, address agent) external {
        address dso = _dso[gridId];
        if (dso == address(0) || msg.sender != dso) revert RegistryNotDso(gridId, msg.sender, dso);
        address previous = _meteringAgent[gridId];
        _meteringAgent[gridId] = agent;
        emit MeteringAgentSet(gridId, previous, agent);
    }

    /// @inheritdoc IFlexRegistry
    function dsoOf(bytes32 gridId) external view returns (address) {
        return _dso[gridId];
    }

    /// @inheritdoc IFlexRegistry
    function meteringAgentOf(bytes32 gridId) external view returns (address) {
        return _meteringAgent[gridId];
    }

    /// @inheritdoc IFlexRegistry
    function isOperator(address account) external view returns (bool) {
        return hasRole(OPERATOR_ROLE, account);
    }

    /// @inheritdoc IFlexRegistry
    function isOracle(address account) external view returns (bool) {
        return hasRole(ORACLE_ROLE, account);
    }

    /// @inheritdoc IFlexRegistry
    function isProvider(address account) external view returns (bool) {
        return hasRole(PROVIDER_ROLE, account);
    }

    /// @inheritdoc IFlexRegistry
    function oracleCount() external view returns (uint256) {
        return getRoleMemberCount(ORACLE_ROLE);
    }
}
