//! Classifying Kafka errors.

use coupon_core::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub(crate) const BACKEND: &str = "kafka";

/// Errors after which the broker certainly did not store the message: the client
/// refused it before sending (its queue full, a topic or partition it does not know), or
/// its size, which every retry would have had, was too large. A refusal by the broker
/// for any other reason may come after an earlier attempt of the same message was
/// stored, so it is an unknown outcome.
fn definitely_not_stored(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
    )
}

/// The issuer's view of a failed publish: refused (release the slot) or unknown (keep it).
pub(crate) fn publish_failed(error: KafkaError) -> Error {
    let refused = match &error {
        KafkaError::MessageProduction(code) => definitely_not_stored(*code),
        // The record could not even be built or queued.
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => true,
        // Everything else, the delivery timeout first, may have stored the ticket.
        _ => false,
    };
    if refused {
        Error::PublishRefused {
            backend: BACKEND,
            source: error.into(),
        }
    } else {
        Error::PublishUnknown {
            backend: BACKEND,
            source: error.into(),
        }
    }
}

/// A non-publish Kafka error: configuration errors are permanent, the rest (broker
/// down, timeouts, rebalances, coordinator moves) retryable.
pub(crate) fn classify(error: KafkaError, what: impl FnOnce() -> String) -> Error {
    let permanent = matches!(
        error,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
    );
    if permanent {
        Error::backend(BACKEND, format!("{}: {error}", what()), Some(error.into()))
    } else {
        Error::unavailable(BACKEND, format!("{}: {error}", what()), Some(error.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_timeout_is_an_unknown_outcome() {
        let error = publish_failed(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        ));
        assert!(matches!(error, Error::PublishUnknown { .. }));
    }

    #[test]
    fn full_local_queue_is_a_refusal() {
        let error = publish_failed(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
        assert!(matches!(error, Error::PublishRefused { .. }));
    }

    #[test]
    fn broker_side_refusals_after_retries_are_unknown() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            let error = publish_failed(KafkaError::MessageProduction(code));
            assert!(matches!(error, Error::PublishUnknown { .. }), "{code:?}");
        }
    }

    #[test]
    fn broker_transport_failure_is_unknown() {
        let error = publish_failed(KafkaError::MessageProduction(
            RDKafkaErrorCode::BrokerTransportFailure,
        ));
        assert!(matches!(error, Error::PublishUnknown { .. }));
    }
}
