//! EIP-1559 base fee.

use alloy_eips::eip1559::BaseFeeParams;

/// The base fee of a block whose parent had `parent_base_fee` and used `parent_gas_used` of
/// `gas_limit`, by the EIP-1559 rule (elasticity 2, change at most 1/8), never below
/// `min_base_fee`.
pub fn next_base_fee(
    parent_base_fee: u64,
    parent_gas_used: u64,
    gas_limit: u64,
    min_base_fee: u64,
) -> u64 {
    let next = alloy_eips::calc_next_block_base_fee(
        parent_gas_used,
        gas_limit,
        parent_base_fee,
        BaseFeeParams::ethereum(),
    );
    next.max(min_base_fee)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_fee_follows_eip1559() {
        // At the target (half the limit) it stays; a full block raises it by 1/8.
        assert_eq!(
            next_base_fee(1_000_000_000, 15_000_000, 30_000_000, 1),
            1_000_000_000
        );
        assert_eq!(
            next_base_fee(1_000_000_000, 30_000_000, 30_000_000, 1),
            1_125_000_000
        );
        // An empty block lowers it by 1/8, never below the floor.
        assert_eq!(next_base_fee(1_000_000_000, 0, 30_000_000, 1), 875_000_000);
        assert_eq!(
            next_base_fee(1_000_000_000, 0, 30_000_000, 1_000_000_000),
            1_000_000_000
        );
    }
}
