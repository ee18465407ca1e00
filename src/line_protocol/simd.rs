//! Where a measurement name ends, and where lines end, found many bytes at once as bitmasks.
//!
//! This module holds the crate's SIMD, and all its `unsafe` but the allocator's settings
//! (`memory.rs`): SSE2 compares of 16 bytes at a time, where the target has SSE2 (every x86_64 one
//! does), and AVX2 compares of 32 for the newlines, where the CPU is found at run time to have AVX2
//! ([`with_fastest`]). Other targets get the scalar loops, which are also the references the SIMD
//! paths are proptested against byte for byte. A name is nearly always shorter than 16 bytes, so
//! one compare finds its end where a byte loop took one step a byte; a line is about 80, so one
//! mask of 64 bytes gives the next line's end, and often the one after, where a `memchr` call a
//! line cost twice as many instructions in its set-up as in its search. The same loads tell whether
//! the block holds a quote or a backslash, after which lines no longer end at every newline: with
//! AVX2 that costs less than a `memchr2` over the body first; with SSE2 alone, whose compares
//! overwrite an operand (a copy each), it costs more.

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

/// Bit `i` set when byte `i` of `bytes` is a ` `.
#[inline]
pub fn spaces(bytes: &[u8; 16]) -> u16 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `sse2::spaces` needs SSE2, and this is compiled only where the target has it.
        unsafe { sse2::spaces(bytes) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        scalar_spaces(bytes)
    }
}

/// [`spaces`], a byte at a time: the reference, and the path of targets without SSE2.
pub fn scalar_spaces(bytes: &[u8; 16]) -> u16 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | u16::from(b == b' ') << i)
}

/// Bit `i` set when byte `i` of `bytes` is a `\n`, a byte at a time: part of the reference of
/// [`unquoted_newlines`].
pub fn scalar_newlines(bytes: &[u8; 64]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | u64::from(b == b'\n') << i)
}

/// Bit `i` set when byte `i` of `bytes` is a `\n`, when the 64 bytes hold neither a `"` nor a
/// `\\`; `None` when they do. Both come of the same loads.
#[inline]
pub fn unquoted_newlines(bytes: &[u8; 64]) -> Option<u64> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `sse2::unquoted_newlines` needs SSE2, and this is compiled only where the
        // target has it.
        unsafe { sse2::unquoted_newlines(bytes) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        scalar_unquoted_newlines(bytes)
    }
}

/// How a line walk finds the newlines of a 64-byte block ([`unquoted_newlines`]): a walk is
/// generic over it, so that the one built for AVX2 has the search inlined into its loop, where a
/// call for every block cost its own set-up, its constants reloaded and the loop's registers
/// saved around it.
pub(crate) trait BlockSearch: Copy {
    /// [`unquoted_newlines`] of `bytes`.
    fn unquoted_newlines(self, bytes: &[u8; 64]) -> Option<u64>;
}

/// The target's own instructions (SSE2 on x86_64, else the scalar loop): needs no detection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline;

impl BlockSearch for Baseline {
    #[inline(always)]
    fn unquoted_newlines(self, bytes: &[u8; 64]) -> Option<u64> {
        unquoted_newlines(bytes)
    }
}

/// A pass over a body's lines, run by [`with_fastest`] with the [`BlockSearch`] this CPU runs
/// fastest. Its `walk` is `#[inline(always)]`, and so is each function its loop runs (such as
/// `NewlineSearch::next`): what is not inlined into the AVX2 entry is built without AVX2, and calls
/// the block search instead of holding it.
///
/// [`crate::line_protocol::Scan`]'s pass is one (routing cost 141 → 115 instructions a point
/// when every point goes everywhere), and so is each fill of [`crate::line_protocol::Newlines`],
/// which finds the newlines ahead of the router's split. The split itself is not: built for AVX2,
/// its loop, which copies each line out with `memcpy` and holds far more state, took about as
/// many instructions and 8 % more time.
pub(crate) trait LineWalk {
    /// What the pass gives.
    type Output;
    /// Runs the pass with `blocks`.
    fn walk<B: BlockSearch>(self, blocks: B) -> Self::Output;
}

/// Runs `walk` with AVX2 where the CPU has it (found at run time: x86_64 targets promise only
/// SSE2), else with [`Baseline`]; the whole walk is then built for AVX2, not just the search, and
/// for BMI1, which the CPUs with AVX2 have too (Intel's from Haswell, AMD's from Excavator; both
/// are asked for): its `blsr` clears a mask's lowest bit in one instruction where the baseline
/// takes three, once for every newline.
#[inline]
pub(crate) fn with_fastest<W: LineWalk>(walk: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
        {
            // SAFETY: `avx2::walk` needs AVX2 and BMI1, which the CPU was just found to have.
            return unsafe { avx2::walk(walk) };
        }
    }
    walk.walk(Baseline)
}

/// [`unquoted_newlines`], a byte at a time: the reference, and the path of targets without SSE2.
pub fn scalar_unquoted_newlines(bytes: &[u8; 64]) -> Option<u64> {
    (!bytes.iter().any(|&b| b == b'"' || b == b'\\')).then(|| scalar_newlines(bytes))
}

/// Whether all 16 bytes are ASCII digits.
#[inline]
pub fn all_digits(bytes: &[u8; 16]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `sse2::all_digits` needs SSE2, and this is compiled only where the target has
        // it.
        unsafe { sse2::all_digits(bytes) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        scalar_all_digits(bytes)
    }
}

/// [`all_digits`], a byte at a time: the reference, and the path of targets without SSE2.
pub fn scalar_all_digits(bytes: &[u8; 16]) -> bool {
    bytes.iter().all(u8::is_ascii_digit)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128, _mm_sub_epi8,
    };

    /// [`super::unquoted_newlines`] with SSE2: a compare for newlines of each 16-byte quarter,
    /// their masks side by side, and two more for quotes and backslashes gathered in one register
    /// that is tested once.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub fn unquoted_newlines(bytes: &[u8; 64]) -> Option<u64> {
        let newline = _mm_set1_epi8(b'\n' as i8);
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let mut mask = 0u64;
        let mut quoted = _mm_setzero_si128();
        for (i, quarter) in bytes.chunks_exact(16).enumerate() {
            // SAFETY: each load reads one 16-byte quarter of `bytes`, borrowed here, and
            // `_mm_loadu_si128` has no alignment requirement.
            let v = unsafe { _mm_loadu_si128(quarter.as_ptr().cast::<__m128i>()) };
            // movemask fills the low 16 bits and leaves the rest clear.
            let hits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, newline)) as u16;
            mask |= u64::from(hits) << (16 * i);
            let special = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
            quoted = _mm_or_si128(quoted, special);
        }
        (_mm_movemask_epi8(quoted) == 0).then_some(mask)
    }

    /// [`super::all_digits`] with SSE2: each byte less `'0'` is at most 9 (unsigned: a byte
    /// below `'0'` wraps around to 0xD0 or more), for all 16 at once.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub fn all_digits(bytes: &[u8; 16]) -> bool {
        // SAFETY: the load reads the 16 bytes of `bytes`, borrowed here, and `_mm_loadu_si128`
        // has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>()) };
        let nine = _mm_set1_epi8(9);
        let values = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
        // Where the greater of a value and 9 is 9, the value was a digit.
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(values, nine), nine)) == 0xFFFF
    }

    /// [`super::spaces`] with SSE2: one compare of all 16 bytes at once.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub fn spaces(bytes: &[u8; 16]) -> u16 {
        // SAFETY: the load reads the 16 bytes of `bytes`, borrowed here, and `_mm_loadu_si128`
        // has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>()) };
        // movemask fills the low 16 bits: the cast keeps exactly them.
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8))) as u16
    }

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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BlockSearch, LineWalk};
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_testz_si256,
    };

    /// [`super::unquoted_newlines`] with AVX2: the SSE2 path's compares, 32 bytes at a time, each
    /// with its own destination (SSE2's overwrite their operand, which cost a copy each).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn unquoted_newlines(bytes: &[u8; 64]) -> Option<u64> {
        // SAFETY: the two loads read the first and second 32 bytes of `bytes`, borrowed here, and
        // `_mm256_loadu_si256` has no alignment requirement.
        let (low, high) = unsafe {
            (
                _mm256_loadu_si256(bytes.as_ptr().cast::<__m256i>()),
                _mm256_loadu_si256(bytes.as_ptr().add(32).cast::<__m256i>()),
            )
        };
        let (quote, backslash) = (_mm256_set1_epi8(b'"' as i8), _mm256_set1_epi8(b'\\' as i8));
        let special = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(low, quote),
                _mm256_cmpeq_epi8(low, backslash),
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(high, quote),
                _mm256_cmpeq_epi8(high, backslash),
            ),
        );
        if _mm256_testz_si256(special, special) == 0 {
            return None;
        }
        let newline = _mm256_set1_epi8(b'\n' as i8);
        // movemask gives one bit a byte, 32 of them: the cast keeps them as they are.
        let low = _mm256_movemask_epi8(_mm256_cmpeq_epi8(low, newline)) as u32;
        let high = _mm256_movemask_epi8(_mm256_cmpeq_epi8(high, newline)) as u32;
        Some(u64::from(high) << 32 | u64::from(low))
    }

    /// Runs `walk` built for AVX2 and BMI1: its `#[inline(always)]` functions are inlined here,
    /// and the block search into their loops.
    #[target_feature(enable = "avx2,bmi1")]
    pub fn walk<W: LineWalk>(walk: W) -> W::Output {
        walk.walk(Avx2(()))
    }

    /// AVX2, which this CPU was found to have: its field is private to this module, where only
    /// [`walk`] makes one, which [`super::with_fastest`] calls after it looked.
    #[derive(Debug, Clone, Copy)]
    pub struct Avx2(());

    impl BlockSearch for Avx2 {
        #[inline(always)]
        fn unquoted_newlines(self, bytes: &[u8; 64]) -> Option<u64> {
            // SAFETY: `unquoted_newlines` needs AVX2. An `Avx2` is made only by `walk` (its field
            // is private to this module), which needs AVX2 itself and so runs only on a CPU
            // that has it: `with_fastest` calls it after detection.
            unsafe { unquoted_newlines(bytes) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The mask of `bytes` as a walk run by [`with_fastest`] finds it: AVX2's, where the CPU has
    /// it.
    fn fastest(bytes: &[u8; 64]) -> Option<u64> {
        struct One<'b>(&'b [u8; 64]);
        impl LineWalk for One<'_> {
            type Output = Option<u64>;
            fn walk<B: BlockSearch>(self, blocks: B) -> Option<u64> {
                blocks.unquoted_newlines(self.0)
            }
        }
        with_fastest(One(bytes))
    }

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

    proptest! {
        #[test]
        fn the_simd_newline_mask_is_the_scalar_one(
            bytes in proptest::collection::vec(
                prop_oneof![
                    8 => prop_oneof![Just(b'\n'), Just(b'\r'), Just(0x8a), any::<u8>()],
                    1 => prop_oneof![Just(b'"'), Just(b'\\'), Just(0xa2), Just(0xdc)],
                ],
                64,
            )
        ) {
            let bytes: [u8; 64] = bytes.try_into().unwrap();
            prop_assert_eq!(unquoted_newlines(&bytes), scalar_unquoted_newlines(&bytes));
            // AVX2 here, where the CPU has it.
            prop_assert_eq!(fastest(&bytes), scalar_unquoted_newlines(&bytes));
        }
    }

    proptest! {
        #[test]
        fn the_simd_digit_check_is_the_scalar_one(
            bytes in proptest::collection::vec(
                prop_oneof![8 => b'0'..=b'9', 1 => any::<u8>()],
                16,
            )
        ) {
            let bytes: [u8; 16] = bytes.try_into().unwrap();
            prop_assert_eq!(all_digits(&bytes), scalar_all_digits(&bytes));
        }
    }

    proptest! {
        #[test]
        fn the_simd_space_mask_is_the_scalar_one(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'\\'), any::<u8>()],
                16,
            )
        ) {
            let bytes: [u8; 16] = bytes.try_into().unwrap();
            prop_assert_eq!(spaces(&bytes), scalar_spaces(&bytes));
        }
    }

    #[test]
    fn each_newline_bit_is_its_byte() {
        let mut bytes = [b'x'; 64];
        for i in [0, 15, 16, 31, 47, 63] {
            bytes[i] = b'\n';
        }
        assert_eq!(
            unquoted_newlines(&bytes),
            Some(1 | 1 << 15 | 1 << 16 | 1 << 31 | 1 << 47 | 1 << 63)
        );
        assert_eq!(unquoted_newlines(&[b'\r'; 64]), Some(0));
        assert_eq!(
            fastest(&bytes),
            Some(1 | 1 << 15 | 1 << 16 | 1 << 31 | 1 << 47 | 1 << 63)
        );
        for special in [b'"', b'\\'] {
            for at in [0, 17, 63] {
                let mut quoted = bytes;
                quoted[at] = special;
                assert_eq!(unquoted_newlines(&quoted), None);
                assert_eq!(fastest(&quoted), None);
            }
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
