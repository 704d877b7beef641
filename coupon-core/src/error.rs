//! The one error type of the pipeline, classified for callers and the worker.

use crate::{CampaignId, UserId};

/// A boxed backend error kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in firstcome.
///
/// [`Error::is_retryable`] tells whether the same call may succeed later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No campaign with this id exists.
    #[error("unknown campaign {campaign}")]
    UnknownCampaign {
        /// The id that was asked for.
        campaign: CampaignId,
    },

    /// A campaign definition breaks an invariant.
    #[error("invalid campaign: {field} {reason}")]
    InvalidCampaign {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The queue definitely did not store the ticket (refused, never sent).
    #[error("publish refused by {backend}: the ticket was not stored")]
    PublishRefused {
        /// The queue adapter.
        backend: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },

    /// The queue may or may not have stored the ticket (a delivery timeout).
    #[error("publish outcome unknown on {backend}: the ticket may have been stored")]
    PublishUnknown {
        /// The queue adapter.
        backend: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },

    /// An admitted application whose ticket the queue definitely refused: its slot was
    /// given back, so nothing happened and the applicant may try again.
    #[error("campaign {campaign}, user {user}: hand-off refused, slot given back")]
    NotHandedOff {
        /// The campaign applied to.
        campaign: CampaignId,
        /// The applicant.
        user: UserId,
        /// The queue's error.
        #[source]
        source: Box<Error>,
    },

    /// A backend is unreachable or overloaded for now (connection refused, timeout,
    /// loading, deadlock, serialisation failure).
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<BoxError>,
    },

    /// A backend call whose effect may or may not have happened (a timeout, or the
    /// connection dropped after the request was sent): the caller must not assume
    /// either. Retrying is safe only for idempotent calls.
    #[error("{backend}: outcome unknown: {message}")]
    OutcomeUnknown {
        /// Which backend.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<BoxError>,
    },

    /// A backend answered in a way that will not change on retry (wrong data type at a
    /// key, a script error, a constraint or schema that is not ours).
    #[error("{backend} failed: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What happened, naming the key, table or topic involved.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The backend's schema is not the one this crate wrote (a table or column is
    /// missing, or has another type): refusing to run beats writing somewhere wrong.
    #[error("{backend} schema is not firstcome's: {detail}")]
    SchemaMismatch {
        /// Which backend.
        backend: &'static str,
        /// What was expected and not found.
        detail: String,
    },

    /// The counter holds no state built for this campaign on its backend (never built,
    /// or lost: a restart without data, an evicted key, a failover to a replica that
    /// missed writes). It admits no one until it is rebuilt from the store, which the
    /// [`CouponService`](crate::CouponService) starts by itself; try again shortly.
    #[error(
        "campaign {campaign}: the {backend} counter is not ready (being rebuilt from the store); try again shortly"
    )]
    NotReady {
        /// The campaign applied to.
        campaign: CampaignId,
        /// Which counter.
        backend: &'static str,
    },

    /// The admission was superseded: the campaign's counter was rebuilt in a new epoch
    /// from a snapshot that does not hold it, so its slot may be someone else's now. Its
    /// applicant was never told yes; applying again tells what holds now.
    #[error(
        "campaign {campaign}, user {user}: an admission of counter epoch {epoch} was superseded by a rebuild; apply again"
    )]
    Superseded {
        /// The campaign applied to.
        campaign: CampaignId,
        /// The applicant.
        user: UserId,
        /// The epoch the admission was made in.
        epoch: u64,
    },

    /// The store refused the ticket of the applicant's admission for good (a dead letter,
    /// or over the cap): no coupon follows unless an operator replays it.
    #[error(
        "campaign {campaign}, user {user}: the store refused this admission's ticket ({reason})"
    )]
    TicketRefused {
        /// The campaign applied to.
        campaign: CampaignId,
        /// The applicant.
        user: UserId,
        /// The failure recorded for it.
        reason: String,
    },

    /// The component was shut down and takes no more work.
    #[error("{what} is closed")]
    Closed {
        /// Which component.
        what: &'static str,
    },
}

/// The three kinds of failure callers act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Nothing happened; trying again later may succeed.
    Retryable,
    /// It may have happened; trying again later may succeed, but only an idempotent
    /// call may simply be repeated.
    OutcomeUnknown,
    /// Trying again will fail the same way.
    Permanent,
}

impl Error {
    /// Which of the three kinds of failure this is.
    ///
    /// ```
    /// use coupon_core::{Error, ErrorClass};
    /// let timeout = Error::OutcomeUnknown { backend: "redis", message: "timed out".into(), source: None };
    /// assert_eq!(timeout.class(), ErrorClass::OutcomeUnknown);
    /// assert!(timeout.is_retryable());
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::PublishUnknown { .. } | Error::OutcomeUnknown { .. } => {
                ErrorClass::OutcomeUnknown
            }
            Error::PublishRefused { .. }
            | Error::NotHandedOff { .. }
            | Error::Unavailable { .. }
            | Error::NotReady { .. }
            | Error::Superseded { .. } => ErrorClass::Retryable,
            Error::UnknownCampaign { .. }
            | Error::InvalidCampaign { .. }
            | Error::Backend { .. }
            | Error::SchemaMismatch { .. }
            | Error::TicketRefused { .. }
            | Error::Closed { .. } => ErrorClass::Permanent,
        }
    }

    /// Whether the call's effect may have happened although it failed.
    pub fn is_outcome_unknown(&self) -> bool {
        self.class() == ErrorClass::OutcomeUnknown
    }

    /// Whether the same call may succeed if tried again later.
    ///
    /// ```
    /// use coupon_core::{CampaignId, Error};
    /// assert!(!Error::UnknownCampaign { campaign: CampaignId(1) }.is_retryable());
    /// let busy = Error::Unavailable { backend: "redis", message: "LOADING".into(), source: None };
    /// assert!(busy.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.class() != ErrorClass::Permanent
    }

    /// A retryable error for `backend`, with a message naming what was involved.
    ///
    /// ```
    /// use coupon_core::Error;
    /// let error = Error::unavailable("redis", "GET {coupon:1}:count: timed out", None);
    /// assert!(error.is_retryable() && !error.is_outcome_unknown());
    /// ```
    pub fn unavailable(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<Option<BoxError>>,
    ) -> Self {
        Error::Unavailable {
            backend,
            message: message.into(),
            source: source.into(),
        }
    }

    /// An error of unknown outcome for `backend` (the call may have taken effect), with
    /// a message naming what was involved.
    ///
    /// ```
    /// use coupon_core::Error;
    /// let error = Error::outcome_unknown("postgres", "COMMIT: connection reset", None);
    /// assert!(error.is_outcome_unknown());
    /// ```
    pub fn outcome_unknown(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<Option<BoxError>>,
    ) -> Self {
        Error::OutcomeUnknown {
            backend,
            message: message.into(),
            source: source.into(),
        }
    }

    /// A permanent error for `backend` with a message naming what was involved.
    pub fn backend(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<Option<BoxError>>,
    ) -> Self {
        Error::Backend {
            backend,
            message: message.into(),
            source: source.into(),
        }
    }
}
