// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IFlexRegistry
/// @notice Who may do what in FlexGrid. The market operator (OPERATOR_ROLE) onboards participants;
/// each grid (a `gridId`, keccak256 of the grid's name) has one DSO and one metering agent chosen by
/// that DSO; oracles (ORACLE_ROLE) commit clearing results; providers and prosumers (PROVIDER_ROLE)
/// place offers and P2P orders. An auditor needs no role.
/// @dev Registration is by operator approval, not by bond: real flexibility markets (USEF, GOPACS)
/// prequalify providers and their assets before they may bid, which a bond cannot express; bonds
/// stay where they fit, as bid deposits and dispute bonds in the market.
interface IFlexRegistry {
    // ------------------------------------------------------------------ errors

    /// @notice `account` must not be the zero address (`what` names the argument).
    error RegistryZeroAddress(string what);
    /// @notice `gridId` must not be zero.
    error RegistryZeroGrid();
    /// @notice `account` is not the DSO of `gridId` (the DSO is `dso`).
    error RegistryNotDso(bytes32 gridId, address account, address dso);
    /// @notice `account` is already an approved provider.
    error RegistryAlreadyProvider(address account);
    /// @notice `account` is not an approved provider.
    error RegistryNotProvider(address account);

    // ------------------------------------------------------------------ events

    /// @notice The DSO of `gridId` changed from `previous` to `dso` (zero removes it).
    event DsoSet(bytes32 indexed gridId, address indexed previous, address indexed dso);
    /// @notice The metering agent of `gridId` changed from `previous` to `agent` (zero removes it).
    event MeteringAgentSet(bytes32 indexed gridId, address indexed previous, address indexed agent);
    /// @notice The operator approved `account` as a provider after prequalifying `profileHash`
    /// (hash of its off-chain prequalification record: assets, connection points).
    event ProviderApproved(address indexed account, bytes32 indexed profileHash, address indexed operator);
    /// @notice The operator revoked `account` as a provider.
    event ProviderRevoked(address indexed account, address indexed operator);

    // ------------------------------------------------------------------ roles

    /// @notice Role of the market operator: creates rounds, onboards participants, pauses.
    function OPERATOR_ROLE() external view returns (bytes32);
    /// @notice Role of a clearing oracle.
    function ORACLE_ROLE() external view returns (bytes32);
    /// @notice Role of an approved flexibility provider or prosumer.
    function PROVIDER_ROLE() external view returns (bytes32);

    // ------------------------------------------------------------------ operator

    /// @notice Sets the DSO of `gridId` (only OPERATOR_ROLE). Zero removes it.
    /// @param gridId keccak256 of the grid's name
    /// @param dso the DSO's account
    function setDso(bytes32 gridId, address dso) external;

    /// @notice Approves `account` as a provider (only OPERATOR_ROLE).
    /// @param account the provider or prosumer
    /// @param profileHash hash of its off-chain prequalification record
    function approveProvider(address account, bytes32 profileHash) external;

    /// @notice Revokes `account` as a provider (only OPERATOR_ROLE).
    /// @param account the provider or prosumer
    function revokeProvider(address account) external;

    // ------------------------------------------------------------------ DSO

    /// @notice Sets the metering agent of `gridId` (only the grid's DSO). Zero removes it.
    /// @param gridId the grid
    /// @param agent the account allowed to commit metering roots for the grid's rounds
    function setMeteringAgent(bytes32 gridId, address agent) external;

    // ------------------------------------------------------------------ views

    /// @notice The DSO of `gridId` (zero if none).
    function dsoOf(bytes32 gridId) external view returns (address);
    /// @notice The metering agent of `gridId` (zero if none).
    function meteringAgentOf(bytes32 gridId) external view returns (address);
    /// @notice Whether `account` holds OPERATOR_ROLE.
    function isOperator(address account) external view returns (bool);
    /// @notice Whether `account` holds ORACLE_ROLE.
    function isOracle(address account) external view returns (bool);
    /// @notice Whether `account` holds PROVIDER_ROLE.
    function isProvider(address account) external view returns (bool);
    /// @notice Number of oracles (the n of k-of-n).
    function oracleCount() external view returns (uint256);
}
