//! Where a measurement name ends, found for 16 bytes at once as a bitmask.
//!
//! This is the crate's one module with `unsafe`: SSE2 compares of 16 bytes at a time, where the
//! target has SSE2 (every x86_64 one does). Other targets get the scalar loop, which is also the
//! reference the SSE2 path is proptested against byte for byte. A name is nearly always shorter
//! than 16 bytes, so one compare finds its end where a byte loop took one step a byte.

/// Bit `i` set when byte `i` of `bytes` ends a measurement name: a `,` or a ` `.
#[inline]
pub fn separators(bytes: &[u8; 16]) -> u16 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `sse2::separators` needs SSE2, and this is compiled only where the target has
        // it.
        unsafe { sse2::separators(bytes) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        scalar(bytes)
    }
}

/// [`separators`], a byte at a time: the reference, and the path of targets without SSE2.
pub fn scalar(bytes: &[u8; 16]) -> u16 {
    bytes.iter().enumerate().fold(0, |mask, (i, &b)| {
        mask | u16::from(b == b',' || b == b' ') << i
    })
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// [`super::separators`] with SSE2: two compares of all 16 bytes at once.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub fn separators(bytes: &[u8; 16]) -> u16 {
        // SAFETY: the load reads the 16 bytes of `bytes`, borrowed here, and `_mm_loadu_si128`
        // has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>()) };
        let hits = _mm_or_si128(
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8)),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8)),
        );
        // movemask fills the low 16 bits: the cast keeps exactly them.
        _mm_movemask_epi8(hits) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_simd_mask_is_the_scalar_one(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b','), Just(b' '), Just(b'\\'), any::<u8>()],
                16,
            )
        ) {
            let bytes: [u8; 16] = bytes.try_into().unwrap();
            prop_assert_eq!(separators(&bytes), scalar(&bytes));
        }
    }

    #[test]
    fn each_bit_is_its_byte() {
        let mut bytes = [b'x'; 16];
        bytes[0] = b',';
        bytes[7] = b' ';
        bytes[15] = b',';
        assert_eq!(separators(&bytes), 1 | 1 << 7 | 1 << 15);
        assert_eq!(separators(&[b'a'; 16]), 0);
    }
}
