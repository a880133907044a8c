// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm, HEVM_ADDRESS} from "./Vm.sol";

/// @notice Minimal test base: the cheatcodes, assertions that revert with both values, bounding,
/// and the invariant target lists forge reads from a test contract.
abstract contract Test {
    Vm internal constant vm = Vm(HEVM_ADDRESS);

    /// @dev forge reads `IS_TEST` to find test contracts.
    bool public IS_TEST = true;

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    address[] private _targetSenders;

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }

    function _targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function _targetSelector(FuzzSelector memory selector) internal {
        _targetSelectors.push(selector);
    }

    function _targetSender(address sender) internal {
        _targetSenders.push(sender);
    }

    // ------------------------------------------------------------------ assertions

    function _fail(string memory what) internal pure {
        revert(what);
    }

    function assertTrue(bool condition, string memory what) internal pure {
        if (!condition) _fail(what);
    }

    function assertFalse(bool condition, string memory what) internal pure {
        if (condition) _fail(what);
    }

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) _fail(string.concat(what, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(int256 a, int256 b, string memory what) internal pure {
        if (a != b) _fail(string.concat(what, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(address a, address b, string memory what) internal pure {
        if (a != b) _fail(string.concat(what, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        if (a != b) _fail(string.concat(what, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(bool a, bool b, string memory what) internal pure {
        if (a != b) _fail(string.concat(what, ": ", a ? "true" : "false", " != ", b ? "true" : "false"));
    }

    function assertLe(uint256 a, uint256 b, string memory what) internal pure {
        if (a > b) _fail(string.concat(what, ": ", vm.toString(a), " > ", vm.toString(b)));
    }

    function assertGe(uint256 a, uint256 b, string memory what) internal pure {
        if (a < b) _fail(string.concat(what, ": ", vm.toString(a), " < ", vm.toString(b)));
    }

    /// @dev Maps `x` into [min, max] (inclusive), uniformly enough for fuzzing.
    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (min > max) revert("bound: min > max");
        if (max == type(uint256).max && min == 0) return x;
        return min + (x % (max - min + 1));
    }
}
