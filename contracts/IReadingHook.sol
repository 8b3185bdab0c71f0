// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title What a reading hook implements.
/// @notice Called by the chain (msg.sender is the IoT precompile,
/// 0x0000000000000000000000000000000000001070) once for each reading of the hooked stream,
/// in block order, after the block's other items. The reading was signed by the device and
/// checked by every validator; no account can make this call. `value` is `data` in
/// micro-units when `hasValue`. The receipt of the call has the id
/// keccak256(readingId ++ hook address).
interface IReadingHook {
    function onReading(
        address device,
        string calldata stream,
        uint64 seq,
        uint64 ts,
        bool hasValue,
        int256 value,
        bytes32 readingId
    ) external;
}
