//! The held slots of the `users` hash, as the scripts write them.

use chrono::DateTime;
use coupon_core::{HeldSlot, UserId};

/// A field and value of the `users` hash as a held slot: `<user>` or `<user>:<slot>`,
/// and `<rank>:<ms>[:<token>]` (or a bare `<ms>` written before ranks were kept: rank 0).
pub(crate) fn parse_held(field: &str, value: &str) -> Option<HeldSlot> {
    let (user, slot) = match field.split_once(':') {
        Some((user, slot)) => (user.parse().ok()?, slot.parse().ok()?),
        None => (field.parse().ok()?, 1),
    };
    let mut parts = value.splitn(3, ':');
    let (rank, millis) = match (parts.next(), parts.next()) {
        // The third part, when present, is the token of the request that took it.
        (Some(rank), Some(millis)) => (rank.parse().ok()?, millis.parse().ok()?),
        (Some(millis), None) => (0, millis.parse().ok()?),
        _ => return None,
    };
    Some(HeldSlot {
        user: UserId(user),
        slot,
        rank,
        admitted_at: Some(DateTime::from_timestamp_millis(millis)?),
        epoch: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_of_held_slot() {
        let held = parse_held("42", "7:1764000000000").unwrap();
        assert_eq!((held.user, held.slot, held.rank), (UserId(42), 1, 7));
        assert_eq!(
            held.admitted_at.map(|at| at.timestamp_millis()),
            Some(1_764_000_000_000)
        );
        let second = parse_held("42:2", "9:1764000000000").unwrap();
        assert_eq!((second.slot, second.rank), (2, 9));
        let tokened = parse_held("42", "7:1764000000000:9f3a").unwrap();
        assert_eq!((tokened.slot, tokened.rank), (1, 7));
        let legacy = parse_held("42", "1764000000000").unwrap();
        assert_eq!((legacy.slot, legacy.rank), (1, 0));
        for (field, value) in [("x", "1:1"), ("1", "x:1"), ("1:", "1:1"), ("1", "")] {
            assert!(parse_held(field, value).is_none(), "{field:?} = {value:?}");
        }
    }
}
