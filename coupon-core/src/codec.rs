//! The wire format of a ticket on any queue: self-describing JSON with a version, checked
//! first.

use crate::IssueTicket;

/// Why a message could not be read as a ticket; queues park such messages as dead
/// letters with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message had no payload.
    #[error("empty payload")]
    Empty,
    /// The payload is not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// The object has no numeric `version` field.
    #[error("no version field")]
    NoVersion,
    /// A version this build does not read.
    #[error("unknown ticket version {0} (this build reads {readable:?})", readable = IssueTicket::READABLE_VERSIONS)]
    UnknownVersion(u64),
    /// The right version, but a field is missing or has the wrong type.
    #[error("bad ticket: {0}")]
    BadTicket(String),
}

/// Encodes `ticket` for a queue.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, UserId, codec};
/// let ticket = IssueTicket::new(CampaignId(1), UserId(2), 1, 3);
/// assert_eq!(codec::decode(Some(&codec::encode(&ticket))), Ok(ticket));
/// ```
pub fn encode(ticket: &IssueTicket) -> Vec<u8> {
    // Serialising a struct of numbers, strings and a timestamp cannot fail.
    serde_json::to_vec(ticket).unwrap_or_default()
}

/// Decodes a message payload, checking the version before the shape.
pub fn decode(payload: Option<&[u8]>) -> Result<IssueTicket, DecodeError> {
    let bytes = payload
        .filter(|b| !b.is_empty())
        .ok_or(DecodeError::Empty)?;
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    from_value(value)
}

/// Encodes several tickets as one message: a single ticket exactly as [`encode`] does
/// (what a reader of [`decode`] takes), more as a JSON array of them.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, UserId, codec};
/// let tickets: Vec<_> = (1..=3).map(|user| IssueTicket::new(CampaignId(1), UserId(user), 1, user)).collect();
/// assert_eq!(codec::decode_group(Some(&codec::encode_group(&tickets))), Ok(tickets));
/// let one = IssueTicket::new(CampaignId(1), UserId(9), 1, 9);
/// assert_eq!(codec::encode_group(std::slice::from_ref(&one)), codec::encode(&one));
/// ```
pub fn encode_group(tickets: &[IssueTicket]) -> Vec<u8> {
    match tickets {
        [one] => encode(one),
        // As in `encode`: serialising these cannot fail.
        many => serde_json::to_vec(many).unwrap_or_default(),
    }
}

/// Decodes a message holding one ticket ([`encode`]) or a JSON array of tickets
/// ([`encode_group`]). Every ticket is checked as [`decode`] checks one; if any fails,
/// so does the message (it is parked whole, with the first reason).
pub fn decode_group(payload: Option<&[u8]>) -> Result<Vec<IssueTicket>, DecodeError> {
    let bytes = payload
        .filter(|b| !b.is_empty())
        .ok_or(DecodeError::Empty)?;
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    match value {
        serde_json::Value::Array(values) if !values.is_empty() => {
            values.into_iter().map(from_value).collect()
        }
        serde_json::Value::Array(_) => Err(DecodeError::NotJson("an empty array".into())),
        value => from_value(value).map(|ticket| vec![ticket]),
    }
}

/// Checks the version of one ticket's JSON before its shape.
fn from_value(value: serde_json::Value) -> Result<IssueTicket, DecodeError> {
    let object = value
        .as_object()
        .ok_or_else(|| DecodeError::NotJson("a JSON value that is not an object".into()))?;
    let version = object
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or(DecodeError::NoVersion)?;
    if !IssueTicket::READABLE_VERSIONS
        .iter()
        .any(|&readable| u64::from(readable) == version)
    {
        return Err(DecodeError::UnknownVersion(version));
    }
    serde_json::from_value(value).map_err(|e| DecodeError::BadTicket(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CampaignId, UserId};

    fn ticket() -> IssueTicket {
        IssueTicket::new(CampaignId(7), UserId(u64::MAX), 1, 42)
    }

    #[test]
    fn round_trips_every_field() {
        let ticket = ticket();
        assert_eq!(decode(Some(&encode(&ticket))), Ok(ticket));
    }

    #[test]
    fn reads_version_one_tickets_published_before_ids_were_derived() {
        let v1 = br#"{"version":1,"ticket_id":"0b0f1c1e-2a54-4c5b-9a51-5c4f3f5e1a10",
            "campaign":7,"user":42,"rank":3,"admitted_at":"2026-11-25T10:00:00Z"}"#;
        let ticket = decode(Some(v1)).expect("a version 1 ticket");
        assert_eq!((ticket.user, ticket.slot, ticket.rank), (UserId(42), 1, 3));
    }

    #[test]
    fn refuses_each_malformed_shape() {
        let mut wrong_version: serde_json::Value =
            serde_json::from_slice(&encode(&ticket())).unwrap();
        wrong_version["version"] = 4.into();
        let mut missing_user =
            serde_json::from_slice::<serde_json::Value>(&encode(&ticket())).unwrap();
        missing_user.as_object_mut().unwrap().remove("user");
        let mut wrong_type =
            serde_json::from_slice::<serde_json::Value>(&encode(&ticket())).unwrap();
        wrong_type["rank"] = "first".into();

        type Expect = fn(&DecodeError) -> bool;
        let cases: Vec<(Option<Vec<u8>>, Expect)> = vec![
            (None, |e| *e == DecodeError::Empty),
            (Some(Vec::new()), |e| *e == DecodeError::Empty),
            (Some(b"\xff\xfe not json".to_vec()), |e| {
                matches!(e, DecodeError::NotJson(_))
            }),
            (Some(b"[1, 2, 3]".to_vec()), |e| {
                matches!(e, DecodeError::NotJson(_))
            }),
            (Some(br#"{"campaign": 1}"#.to_vec()), |e| {
                *e == DecodeError::NoVersion
            }),
            (Some(br#"{"version": "1"}"#.to_vec()), |e| {
                *e == DecodeError::NoVersion
            }),
            (Some(wrong_version.to_string().into_bytes()), |e| {
                *e == DecodeError::UnknownVersion(4)
            }),
            (Some(missing_user.to_string().into_bytes()), |e| {
                matches!(e, DecodeError::BadTicket(_))
            }),
            (Some(wrong_type.to_string().into_bytes()), |e| {
                matches!(e, DecodeError::BadTicket(_))
            }),
        ];
        for (payload, expected) in cases {
            let error = decode(payload.as_deref()).expect_err("malformed");
            assert!(expected(&error), "{payload:?} gave {error:?}");
        }
    }

    #[test]
    fn a_group_reads_back_in_order_and_fails_whole_on_one_bad_ticket() {
        let tickets: Vec<_> = (1..=300)
            .map(|user| IssueTicket::new(CampaignId(7), UserId(user), 1, user))
            .collect();
        assert_eq!(
            decode_group(Some(&encode_group(&tickets))),
            Ok(tickets.clone())
        );
        // A reader of groups reads a single ticket too.
        let one = ticket();
        assert_eq!(decode_group(Some(&encode(&one))), Ok(vec![one]));

        let mut group: serde_json::Value =
            serde_json::from_slice(&encode_group(&tickets[..3])).unwrap();
        group[1]["version"] = 9.into();
        assert_eq!(
            decode_group(Some(group.to_string().as_bytes())),
            Err(DecodeError::UnknownVersion(9))
        );
        for bad in [&b"[]"[..], b"[1]", b"{}", b""] {
            assert!(decode_group(Some(bad)).is_err(), "{bad:?}");
        }
        // A reader of single tickets refuses a group: it is parked, never half-read.
        assert!(decode(Some(&encode_group(&tickets[..2]))).is_err());
    }
}
