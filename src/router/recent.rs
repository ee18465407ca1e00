//! What a write has just decided for a name as written (a measurement's placement, a tag value's
//! shard, a tag section's shard), so that each line is placed without matching the routes,
//! walking its tags or hashing a name again.

/// What was decided for the last few names of a write, by the name as written: a batch usually
/// cycles through a handful of measurements and tag values, and matching the routes (maybe a
/// regex) or hashing the name again for every line would cost more than the rest of the routing.
/// A fixed table of `SLOTS` (a power of two) in which each name may sit in one of two slots
/// chosen by its hash, so that a line compares its name at most twice and a handful of names
/// rarely evict each other: nothing is allocated per write or per line.
pub(super) struct Recent<'b, V, const SLOTS: usize = 64> {
    entries: [Option<(NameKey<'b>, V)>; SLOTS],
}

/// A name as written, with its first and last eight bytes as words (overlapping when
/// it is shorter than 16; a name of 4 to 7 bytes gives its first and last four, one of 1 to 3 its
/// first, middle and last byte, which cover it). With the length they tell names up to 16 bytes
/// long, nearly all of them, apart, and hash them, in a few loads and without `memcmp`.
#[derive(Clone, Copy)]
struct NameKey<'b> {
    name: &'b [u8],
    first: u64,
    last: u64,
}

impl<'b> NameKey<'b> {
    #[inline]
    fn new(name: &'b [u8]) -> Self {
        let (first, last) = match (name.first_chunk::<8>(), name.last_chunk::<8>()) {
            (Some(first), Some(last)) => (u64::from_le_bytes(*first), u64::from_le_bytes(*last)),
            _ => match (name.first_chunk::<4>(), name.last_chunk::<4>()) {
                (Some(first), Some(last)) => (
                    u64::from(u32::from_le_bytes(*first)),
                    u64::from(u32::from_le_bytes(*last)),
                ),
                _ => match name {
                    [] => (0, 0),
                    [first, ..] => {
                        let word = u64::from(*first) << 16
                            | u64::from(name[name.len() / 2]) << 8
                            | u64::from(name[name.len() - 1]);
                        (word, word)
                    }
                },
            },
        };
        NameKey { name, first, last }
    }

    #[inline]
    fn hash(&self) -> u64 {
        const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut hash = self.first ^ self.last.rotate_left(29) ^ self.name.len() as u64;
        if self.name.len() > 16 {
            // Every word of a long name: tag sections share their first and last bytes (`,host=`
            // and the last tag) and differ anywhere between.
            for word in self.name.chunks_exact(8) {
                let word = word
                    .first_chunk::<8>()
                    .map_or(0, |w| u64::from_le_bytes(*w));
                hash = hash.wrapping_mul(MIX) ^ word;
            }
        }
        hash.wrapping_mul(MIX)
    }

    #[inline]
    fn same(&self, other: &NameKey<'_>) -> bool {
        self.name.len() == other.name.len()
            && self.first == other.first
            && self.last == other.last
            && (self.name.len() <= 16 || self.name == other.name)
    }
}

impl<V: Copy, const SLOTS: usize> Default for Recent<'_, V, SLOTS> {
    fn default() -> Self {
        Recent {
            entries: [None; SLOTS],
        }
    }
}

impl<'b, V: Copy, const SLOTS: usize> Recent<'b, V, SLOTS> {
    /// Bits of a hash that pick a slot: `SLOTS` is a power of two.
    const BITS: u32 = SLOTS.trailing_zeros();

    /// What was decided for `name` as written; `decide` decides it when it is not remembered.
    // Called for every line from another module (another codegen unit): without the hint it
    // would not be inlined into the line loop.
    #[inline]
    pub(super) fn get_or_insert(&mut self, name: &'b [u8], decide: impl FnOnce() -> V) -> V {
        let key = NameKey::new(name);
        let hash = key.hash();
        // Two slots from the hash's top bits, for a power of two of them.
        let slots = [
            (hash >> (64 - Self::BITS)) as usize,
            (hash >> (64 - 2 * Self::BITS)) as usize % SLOTS,
        ];
        for slot in slots {
            if let Some((known, decided)) = &self.entries[slot] {
                if known.same(&key) {
                    return *decided;
                }
            }
        }
        let decided = decide();
        let slot = slots
            .into_iter()
            .find(|&slot| self.entries[slot].is_none())
            .unwrap_or(slots[0]);
        self.entries[slot] = Some((key, decided));
        decided
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn names_are_told_apart_as_their_bytes_are(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..20),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..20),
        ) {
            prop_assert_eq!(NameKey::new(&a).same(&NameKey::new(&b)), a == b);
            prop_assert!(NameKey::new(&a).same(&NameKey::new(&a.clone())));
        }
    }
}
