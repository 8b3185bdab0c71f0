// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title The iotchain IoT precompile, at 0x0000000000000000000000000000000000001070.
/// @notice The device registry and the latest reading of each device stream, as the readings
/// lane keeps them under the one state root. Views read the state as it was when the
/// transaction started. Changes are checked when called and take effect when the
/// transaction succeeds (a reverted call leaves nothing behind); one change per device per
/// transaction. The caller (msg.sender) is the owner, and must be an owner authorised in the
/// genesis, as for owner transactions.
/// Device addresses are the 20-byte iotchain device addresses; `alg` is the COSE algorithm
/// (-8 EdDSA/Ed25519 with a 32-byte key, -7 ES256/P-256 with a 65-byte uncompressed key).
interface IIoT {
    /// A device's registry record. `status`: 0 active, 1 revoked.
    function device(address device)
        external
        view
        returns (bool registered, address owner, uint8 status, int64 alg, bool hasSeq, uint64 lastSeq);

    /// The latest reading of a device stream. `value` is the reading's `data` in
    /// micro-units (x 1e6) when `data` is a CBOR integer or float (`hasValue`).
    function latestReading(address device, string calldata stream)
        external
        view
        returns (bool found, uint64 seq, uint64 ts, bytes32 readingId, bool hasValue, int256 value);

    /// The hook on a device stream (zero address when none) and what is left of its deposit.
    function hook(address device, string calldata stream)
        external
        view
        returns (address hookContract, uint64 gasLimit, uint256 deposit);

    /// Registers a device under msg.sender; returns its address.
    function registerDevice(int64 alg, bytes calldata publicKey, string calldata model)
        external
        returns (address device);

    /// Replaces a device's key (its address stays).
    function rotateKey(address device, int64 alg, bytes calldata publicKey) external;

    /// Revokes a device: its readings are refused from then on.
    function revokeDevice(address device) external;

    /// Attaches `hookContract` to a stream of a device msg.sender owns (replacing any
    /// earlier hook on that stream); msg.value is added to the stream's deposit. For each
    /// reading of the stream a block includes, the chain calls
    /// `IReadingHook(hookContract).onReading(...)` from this precompile's address with
    /// `gasLimit` gas (the 21,000 base included), paid at the block's base fee from the
    /// deposit. A deposit below gasLimit x base fee skips the call, as does a block whose
    /// hooks have used up their budget (the block gas limit, which also caps gasLimit); a
    /// call that reverts or runs out of gas gets a failed receipt; the reading stays final
    /// either way.
    function attachHook(address device, string calldata stream, address hookContract, uint64 gasLimit)
        external
        payable;

    event DeviceRegistered(address indexed device, address indexed owner, int64 alg, bytes publicKey, string model);
    event KeyRotated(address indexed device, address indexed owner, int64 alg, bytes publicKey);
    event DeviceRevoked(address indexed device, address indexed owner);
    event HookAttached(
        address indexed device, address indexed owner, string stream, address hookContract, uint64 gasLimit, uint256 deposit
    );
}
