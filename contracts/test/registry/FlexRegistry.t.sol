// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexRegistry} from "../../src/FlexRegistry.sol";
import {IFlexRegistry} from "../../src/interfaces/IFlexRegistry.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

/// @notice Follows constructor.tree, setDso.tree, approveProvider.tree, revokeProvider.tree,
/// setMeteringAgent.tree and grantRole.tree in this folder.
contract FlexRegistryTest is Fixture {
    bytes32 internal constant NEW_GRID = keccak256("grid-c");

    function _unauthorized(address account, bytes32 role) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, account, role);
    }

    // constructor
    function test_constructor_reverts_for_a_zero_operator() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryZeroAddress.selector, "operator"));
        new FlexRegistry(address(0));
    }

    function test_constructor_gives_the_operator_admin_and_operator_roles() public view {
        assertTrue(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), operator), "admin");
        assertTrue(registry.isOperator(operator), "operator");
        assertEq(registry.getRoleAdmin(registry.ORACLE_ROLE()), registry.OPERATOR_ROLE(), "oracles by operator");
        assertEq(registry.getRoleAdmin(registry.PROVIDER_ROLE()), registry.OPERATOR_ROLE(), "providers by operator");
        assertEq(registry.oracleCount(), 3, "three oracles granted in the fixture");
    }

    // setDso
    function test_setDso_reverts_when_caller_is_not_operator() public {
        vm.expectRevert(_unauthorized(outsider, registry.OPERATOR_ROLE()));
        vm.prank(outsider);
        registry.setDso(NEW_GRID, outsider);
    }

    function test_setDso_reverts_for_the_zero_grid() public {
        vm.expectRevert(IFlexRegistry.RegistryZeroGrid.selector);
        vm.prank(operator);
        registry.setDso(bytes32(0), dso);
    }

    function test_setDso_sets_and_emits() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IFlexRegistry.DsoSet(GRID, dso, otherDso);
        vm.prank(operator);
        registry.setDso(GRID, otherDso);
        assertEq(registry.dsoOf(GRID), otherDso, "new DSO");
    }

    // approveProvider
    function test_approveProvider_reverts_when_caller_is_not_operator() public {
        vm.expectRevert(_unauthorized(dso, registry.OPERATOR_ROLE()));
        vm.prank(dso);
        registry.approveProvider(outsider, bytes32(0));
    }

    function test_approveProvider_reverts_for_the_zero_address() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryZeroAddress.selector, "account"));
        vm.prank(operator);
        registry.approveProvider(address(0), bytes32(0));
    }

    function test_approveProvider_reverts_for_an_approved_provider() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryAlreadyProvider.selector, provider1));
        vm.prank(operator);
        registry.approveProvider(provider1, bytes32(0));
    }

    function test_approveProvider_grants_the_role_and_emits_the_profile() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IFlexRegistry.ProviderApproved(outsider, keccak256("profile"), operator);
        vm.prank(operator);
        registry.approveProvider(outsider, keccak256("profile"));
        assertTrue(registry.isProvider(outsider), "provider");
    }

    // revokeProvider
    function test_revokeProvider_reverts_when_caller_is_not_operator() public {
        vm.expectRevert(_unauthorized(provider1, registry.OPERATOR_ROLE()));
        vm.prank(provider1);
        registry.revokeProvider(provider1);
    }

    function test_revokeProvider_reverts_for_a_non_provider() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryNotProvider.selector, outsider));
        vm.prank(operator);
        registry.revokeProvider(outsider);
    }

    function test_revokeProvider_revokes_and_emits() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IFlexRegistry.ProviderRevoked(provider1, operator);
        vm.prank(operator);
        registry.revokeProvider(provider1);
        assertFalse(registry.isProvider(provider1), "revoked");
    }

    // setMeteringAgent
    function test_setMeteringAgent_reverts_when_the_grid_has_no_dso() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryNotDso.selector, NEW_GRID, dso, address(0)));
        vm.prank(dso);
        registry.setMeteringAgent(NEW_GRID, meter);
    }

    function test_setMeteringAgent_reverts_when_caller_is_not_the_grids_dso() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryNotDso.selector, GRID, otherDso, dso));
        vm.prank(otherDso);
        registry.setMeteringAgent(GRID, otherDso);
    }

    function test_setMeteringAgent_reverts_for_the_operator_too() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexRegistry.RegistryNotDso.selector, GRID, operator, dso));
        vm.prank(operator);
        registry.setMeteringAgent(GRID, operator);
    }

    function test_setMeteringAgent_sets_and_emits() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IFlexRegistry.MeteringAgentSet(GRID, meter, outsider);
        vm.prank(dso);
        registry.setMeteringAgent(GRID, outsider);
        assertEq(registry.meteringAgentOf(GRID), outsider, "agent");
    }

    // grantRole (OpenZeppelin AccessControl with our role admins)
    function test_grantRole_oracle_reverts_for_a_non_operator() public {
        bytes32 role = registry.ORACLE_ROLE();
        vm.expectRevert(_unauthorized(dso, registry.OPERATOR_ROLE()));
        vm.prank(dso);
        registry.grantRole(role, dso);
    }

    function test_grantRole_operator_needs_the_admin_role() public {
        bytes32 role = registry.OPERATOR_ROLE();
        vm.expectRevert(_unauthorized(oracle, registry.DEFAULT_ADMIN_ROLE()));
        vm.prank(oracle);
        registry.grantRole(role, oracle);
    }
}
