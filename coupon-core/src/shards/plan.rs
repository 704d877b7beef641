//! The arithmetic of shards, apart from any I/O: how a rebuild shares the stock out,
//! and which shard a dry one takes from.

/// How `remaining` slots are shared over `shards` shards at a rebuild: evenly, the
/// first `remaining % shards` shards one more.
pub(crate) fn shares(remaining: u64, shards: u16) -> Vec<u64> {
    let shards = u64::from(shards.max(1));
    (0..shards)
        .map(|shard| remaining / shards + u64::from(shard < remaining % shards))
        .collect()
}

/// The shard a dry `home` takes stock from, and how much: the other shard with the most
/// free budget, half of it rounded up (so that a lone last slot moves too, and two dry
/// shards taking from one donor both get some). `None` when no other shard has any.
pub(crate) fn donor(free: &[u64], home: u16) -> Option<(u16, u64)> {
    let (shard, most) = free
        .iter()
        .enumerate()
        .filter(|&(shard, _)| shard != usize::from(home))
        .max_by_key(|&(shard, free)| (*free, std::cmp::Reverse(shard)))?;
    (*most > 0).then(|| (shard as u16, most.div_ceil(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for shards in 1..=10_u16 {
            for remaining in 0..50 {
                let shared = shares(remaining, shards);
                assert_eq!(shared.len(), usize::from(shards));
                assert_eq!(shared.iter().sum::<u64>(), remaining);
                let (low, high) = (shared.iter().min(), shared.iter().max());
                assert!(high.unwrap() - low.unwrap() <= 1, "{shared:?}");
            }
        }
        assert_eq!(shares(10, 3), [4, 3, 3]);
    }

    #[test]
    fn the_richest_other_shard_gives_half_rounded_up() {
        assert_eq!(donor(&[0, 5, 9, 9], 0), Some((2, 5)));
        assert_eq!(donor(&[7, 1, 0], 2), Some((0, 4)));
        assert_eq!(donor(&[0, 1], 0), Some((1, 1)), "a lone last slot moves");
        assert_eq!(donor(&[8, 0, 0], 0), None, "only the home shard has stock");
        assert_eq!(donor(&[0, 0, 0], 1), None);
    }
}
