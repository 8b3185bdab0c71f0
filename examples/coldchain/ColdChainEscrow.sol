// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "../../contracts/IReadingHook.sol";

/// @title A cold-chain shipment escrow driven by the shipment's temperature sensor.
/// @notice The shipper deploys it with the payment. The sensor's readings reach it as a
/// reading hook (attach it with IIoT.attachHook on the sensor's stream). When the sensor has
/// reported `readingsToDeliver` readings at or below `maxMicroCelsius`, the shipment counts
/// as delivered in the cold chain and the carrier is paid. The first reading above the
/// threshold refunds the shipper instead. Only the chain can call onReading, so only the
/// device's signed readings drive it.
contract ColdChainEscrow is IReadingHook {
    address public constant IOT = 0x0000000000000000000000000000000000001070;

    enum State { Open, Released, Refunded }

    address payable public immutable shipper;
    address payable public immutable carrier;
    address public immutable sensor;
    bytes32 public immutable streamHash;
    int256 public immutable maxMicroCelsius;
    uint64 public immutable readingsToDeliver;

    State public state;
    uint64 public goodReadings;
    int256 public hottest;

    event Reading(uint64 seq, int256 value);
    event Released(address carrier, uint256 amount);
    event Refunded(address shipper, uint256 amount, uint64 seq, int256 value);

    constructor(
        address payable carrier_,
        address sensor_,
        string memory stream_,
        int256 maxMicroCelsius_,
        uint64 readingsToDeliver_
    ) payable {
        require(msg.value > 0, "no payment");
        require(readingsToDeliver_ > 0, "no readings to deliver");
        shipper = payable(msg.sender);
        carrier = carrier_;
        sensor = sensor_;
        streamHash = keccak256(bytes(stream_));
        maxMicroCelsius = maxMicroCelsius_;
        readingsToDeliver = readingsToDeliver_;
        hottest = type(int256).min;
    }

    function onReading(
        address device,
        string calldata stream,
        uint64 seq,
        uint64,
        bool hasValue,
        int256 value,
        bytes32
    ) external override {
        require(msg.sender == IOT, "only the chain calls hooks");
        require(device == sensor && keccak256(bytes(stream)) == streamHash, "not this shipment's sensor");
        if (state != State.Open || !hasValue) {
            return;
        }
        emit Reading(seq, value);
        if (value > hottest) {
            hottest = value;
        }
        uint256 amount = address(this).balance;
        if (value > maxMicroCelsius) {
            state = State.Refunded;
            emit Refunded(shipper, amount, seq, value);
            shipper.transfer(amount);
            return;
        }
        goodReadings += 1;
        if (goodReadings >= readingsToDeliver) {
            state = State.Released;
            emit Released(carrier, amount);
            carrier.transfer(amount);
        }
    }
}
