// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {FlexToken} from "../../src/FlexToken.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @notice Follows mint.tree and permit.tree in this folder.
contract FlexTokenTest is Test {
    FlexToken internal token;
    address internal owner = address(0x0E4);
    uint256 internal constant HOLDER_PK = 0x401D;

    function setUp() public {
        token = new FlexToken(owner);
    }

    function test_decimals_is_six() public view {
        assertEq(token.decimals(), 6, "decimals");
    }

    function test_mint_reverts_when_caller_is_not_owner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        token.mint(address(this), 1);
    }

    function test_mint_by_owner_credits_the_receiver() public {
        vm.prank(owner);
        token.mint(address(0xA), 5e6);
        assertEq(token.balanceOf(address(0xA)), 5e6, "balance");
        assertEq(token.totalSupply(), 5e6, "supply");
    }

    function _permitDigest(address holder, address spender, uint256 value, uint256 deadline) internal view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                holder,
                spender,
                value,
                token.nonces(holder),
                deadline
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
    }

    function test_permit_sets_the_allowance_from_a_signature() public {
        address holder = vm.addr(HOLDER_PK);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(HOLDER_PK, _permitDigest(holder, address(this), 7e6, deadline));
        token.permit(holder, address(this), 7e6, deadline, v, r, s);
        assertEq(token.allowance(holder, address(this)), 7e6, "allowance");
    }

    function test_permit_reverts_after_the_deadline() public {
        address holder = vm.addr(HOLDER_PK);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(HOLDER_PK, _permitDigest(holder, address(this), 7e6, deadline));
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(ERC20Permit.ERC2612ExpiredSignature.selector, deadline));
        token.permit(holder, address(this), 7e6, deadline, v, r, s);
    }

    function test_permit_reverts_for_another_signer() public {
        address holder = vm.addr(HOLDER_PK);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(0xBEEF, _permitDigest(holder, address(this), 7e6, deadline));
        vm.expectRevert(abi.encodeWithSelector(ERC20Permit.ERC2612InvalidSigner.selector, vm.addr(0xBEEF), holder));
        token.permit(holder, address(this), 7e6, deadline, v, r, s);
    }
}
