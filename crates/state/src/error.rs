//! The crate's error type.

use alloy_primitives::Address;
use iotchain_reading::DeviceAddress;

/// Result alias for this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Why a reading or transaction does not apply to the state. `code()` gives the stable
/// machine-readable code used in API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No device with this address is registered.
    #[error("device {0} is not registered")]
    UnknownDevice(DeviceAddress),
    /// The device was revoked by its owner.
    #[error("device {0} is revoked")]
    RevokedDevice(DeviceAddress),
    /// The reading was signed with a key the device no longer uses.
    #[error("device {0} rotated its key: the reading is signed with a replaced key")]
    RotatedKey(DeviceAddress),
    /// The reading's seq is not above the last accepted one, and fills none of the device's
    /// open gaps: it was accepted already.
    #[error(
        "reading seq {seq} of device {device} is not greater than last accepted {last} and fills none of its open gaps"
    )]
    Replay {
        /// Device.
        device: DeviceAddress,
        /// The reading's seq.
        seq: u64,
        /// The last accepted seq.
        last: u64,
    },
    /// The reading's seq was in a gap the device record no longer keeps (more than
    /// [`crate::MAX_OPEN_GAPS`] newer gaps opened since): it cannot be accepted any more.
    #[error(
        "reading seq {seq} of device {device} is at or below {through}, the end of the gaps its record no longer keeps (a replay, or a reading arriving after {max} newer gaps opened)",
        max = crate::MAX_OPEN_GAPS
    )]
    GapClosed {
        /// Device.
        device: DeviceAddress,
        /// The reading's seq.
        seq: u64,
        /// The end of the closed gaps.
        through: u64,
    },
    /// The owner is not authorised by genesis to register devices.
    #[error("owner {0} is not authorised on this chain")]
    UnauthorisedOwner(Address),
    /// The transaction's nonce is not the owner's next nonce.
    #[error("nonce {got} of owner {owner} is not the expected {expected}")]
    BadNonce {
        /// Owner.
        owner: Address,
        /// Nonce in the transaction.
        got: u64,
        /// The owner's next nonce.
        expected: u64,
    },
    /// The device is already registered.
    #[error("device {0} is already registered")]
    DeviceExists(DeviceAddress),
    /// A device of a batch registration cannot be registered: the whole batch is refused.
    #[error("device {index} of the batch: {error}")]
    InBatch {
        /// Its index in the batch, from 0.
        index: usize,
        /// Why.
        error: Box<StateError>,
    },
    /// A device's certificate is from a manufacturer neither the chain nor the owner
    /// authorised (a forged or foreign certificate).
    #[error(
        "certificate of device {device} is signed by {manufacturer}, which is not an authorised manufacturer"
    )]
    UnknownManufacturer {
        /// Device.
        device: DeviceAddress,
        /// Who the certificate recovers to.
        manufacturer: Address,
    },
    /// The device belongs to another owner.
    #[error("device {device} belongs to {owner}, not to the signer")]
    NotOwner {
        /// Device.
        device: DeviceAddress,
        /// Its owner.
        owner: Address,
    },
    /// The rotation keeps the same key or changes the algorithm's address binding wrongly.
    #[error("invalid key rotation: {0}")]
    BadRotation(String),
    /// A device has a hook on as many streams as it may.
    #[error("device {0} already has hooks on the most streams allowed")]
    TooManyHooks(DeviceAddress),
    /// A hook names an empty or too long stream.
    #[error("a hook's stream name must be 1 to 64 bytes, not {0}")]
    BadStream(usize),
}

impl StateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownDevice(_) => "unknown_device",
            Self::RevokedDevice(_) => "revoked_device",
            Self::RotatedKey(_) => "rotated_key",
            Self::Replay { .. } => "replayed_seq",
            Self::GapClosed { .. } => "gap_closed",
            Self::UnauthorisedOwner(_) => "unauthorised_owner",
            Self::BadNonce { .. } => "bad_nonce",
            Self::DeviceExists(_) => "device_exists",
            Self::InBatch { error, .. } => error.code(),
            Self::UnknownManufacturer { .. } => "unknown_manufacturer",
            Self::NotOwner { .. } => "not_owner",
            Self::BadRotation(_) => "bad_rotation",
            Self::TooManyHooks(_) => "too_many_hooks",
            Self::BadStream(_) => "bad_stream",
        }
    }
}
