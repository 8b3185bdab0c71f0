//! PostgreSQL `numeric` in its binary form, for the 256-bit values of Ethereum transactions
//! (wei amounts do not fit a `bigint`, and tokio-postgres has no `numeric` of its own).

use std::error::Error as StdError;

use alloy_primitives::U256;
use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A non-negative integer of up to 256 bits, written as `numeric` with scale 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numeric(pub U256);

/// Base of the digits of `numeric`'s binary form.
const NBASE: u64 = 10_000;

impl Numeric {
    /// The base-10000 digits, most significant first (none for zero).
    fn digits(self) -> Vec<i16> {
        let mut n = self.0;
        let mut out = Vec::new();
        let base = U256::from(NBASE);
        while !n.is_zero() {
            let (q, r) = n.div_rem(base);
            out.push(r.to::<u64>() as i16);
            n = q;
        }
        out.reverse();
        out
    }

    /// The binary wire form: `ndigits, weight, sign, dscale` (each 16 bits) then the digits.
    pub(crate) fn encode(self, out: &mut BytesMut) {
        let mut digits = self.digits();
        // The weight is that of the first digit; trailing zero digits need not be sent.
        let weight = digits.len().saturating_sub(1) as i16;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(0); // positive
        out.put_i16(0); // no decimal digits
        for d in digits {
            out.put_i16(d);
        }
    }
}

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.encode(out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(n: U256) -> Vec<u8> {
        let mut out = BytesMut::new();
        Numeric(n).encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn numeric_wire_form_matches_postgres() {
        // Zero: no digits.
        assert_eq!(wire(U256::ZERO), [0, 0, 0, 0, 0, 0, 0, 0]);
        // 12345 = 1 | 2345: two digits, weight 1.
        assert_eq!(
            wire(U256::from(12_345u64)),
            [0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0x09, 0x29]
        );
        // 10^8 = 1 | 0000 | 0000: one digit sent, weight 2.
        assert_eq!(
            wire(U256::from(100_000_000u64)),
            [0, 1, 0, 2, 0, 0, 0, 0, 0, 1]
        );
        // 2^256 - 1 has 78 decimal digits: 20 base-10000 digits, weight 19.
        let max = wire(U256::MAX);
        assert_eq!(&max[..4], &[0, 20, 0, 19]);
        assert_eq!(&max[8..10], &[0, 11]); // 11 | 5792 | … | 9935
        assert_eq!(&max[max.len() - 2..], &9935i16.to_be_bytes());
    }
}
