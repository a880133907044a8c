// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {Handler} from "./Handler.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {FlexRegistry} from "../../src/FlexRegistry.sol";

/// @notice Invariants of the market under random sequences of the handler's actions
/// (fixed seed, runs and depth per profile in foundry.toml). After every run `afterInvariant`
/// ends every round, releases and withdraws everything and checks that nothing is stuck.
contract InvariantsTest is Fixture {
    Handler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new Handler(
            market, token, FlexRegistry(address(registry)), operator, dso, meter, oracle, [PK1, PK2, PK3]
        );
        _targetContract(address(handler));
        bytes4[] memory selectors = _selectors();
        _targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    function _selectors() internal pure returns (bytes4[] memory selectors) {
        selectors = new bytes4[](17);
        selectors[0] = Handler.createRound.selector;
        selectors[1] = Handler.request.selector;
        selectors[2] = Handler.deposit.selector;
        selectors[3] = Handler.offer.selector;
        selectors[4] = Handler.p2pBuy.selector;
        selectors[5] = Handler.warp.selector;
        selectors[6] = Handler.commit.selector;
        selectors[7] = Handler.dispute.selector;
        selectors[8] = Handler.resolve.selector;
        selectors[9] = Handler.approve.selector;
        selectors[10] = Handler.meterRound.selector;
        selectors[11] = Handler.claim.selector;
        selectors[12] = Handler.close.selector;
        selectors[13] = Handler.cancel.selector;
        selectors[14] = Handler.release.selector;
        selectors[15] = Handler.withdraw.selector;
        selectors[16] = Handler.hostile.selector;
    }

    /// @notice The handler reaches every action with the same random walk the campaign uses, so the
    /// invariants are checked on rounds in every state (not only on reverted calls).
    function test_handler_reaches_every_action_and_state() public {
        bytes4[] memory selectors = _selectors();
        uint256 seed = 0xf1e6;
        for (uint256 i; i < 1500; ++i) {
            seed = uint256(keccak256(abi.encode(seed)));
            (bool ok,) = address(handler).call(
                abi.encodeWithSelector(selectors[seed % selectors.length], seed >> 8, uint256(uint64(seed >> 128)))
            );
            assertTrue(ok, "handler actions never revert");
        }
        string[15] memory actions =
            ["create", "request", "deposit", "offer", "p2p", "commit", "dispute", "resolve", "approve", "meter", "close", "cancel", "release", "charge", "payment"];
        for (uint256 i; i < actions.length; ++i) {
            assertGe(handler.succeeded(bytes32(bytes(actions[i]))), 1, string.concat("never succeeded: ", actions[i]));
        }
        afterInvariant();
    }

    /// @notice tokens held by the market = deposits + budgets + escrows + bonds − withdrawals.
    function invariant_conservation() public view {
        assertEq(token.balanceOf(address(market)), handler.ghostIn() - handler.ghostWithdrawn(), "held = in - out");
    }

    /// @notice Credited balances never exceed what the market holds, and every round pays out no
    /// more than it charged, charges no more than its pot, and pays no more than committed.
    function invariant_solvency_per_round() public view {
        address[6] memory a = handler.actors();
        uint256 credited;
        for (uint256 j; j < a.length; ++j) {
            credited += market.balanceOf(a[j]);
        }
        assertLe(credited, token.balanceOf(address(market)), "credited <= held");
        for (uint256 k; k < handler.roundCount(); ++k) {
            FlexTypes.RoundStatus memory st = market.roundStatus(handler.rounds(k));
            assertLe(st.paid, st.charged, "paid <= charged");
            assertLe(st.charged, st.pot, "charged <= pot");
            assertLe(st.paid, st.totalPayout, "paid <= committed total");
        }
    }

    /// @notice No restricted call ever succeeded for a caller without the role.
    function invariant_only_the_right_role_changes_state() public view {
        assertEq(handler.ghostUnauthorizedSuccess(), 0, "unauthorized success");
    }

    /// @notice After every round ends and everyone releases and withdraws, nothing is stuck.
    function afterInvariant() public {
        handler.drain();
        assertEq(token.balanceOf(address(market)), 0, "nothing stuck");
        assertEq(handler.ghostIn(), handler.ghostWithdrawn(), "everything paid in was paid out");
    }
}
