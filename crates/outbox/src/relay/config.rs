//! The relay's settings: defaults that suit most services, a builder to change
//! them, and [`RelayConfigBuilder::build`] refusing what cannot work.

use std::time::Duration;

use super::send::SEND_MARGIN;
use crate::store::ClaimSize;

/// Validated relay settings; see [`RelayConfig::builder`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub(crate) workers: u16,
    pub(crate) batches_in_flight: u16,
    pub(crate) claim_size: u16,
    pub(crate) run_size: u16,
    pub(crate) max_attempts: i32,
    pub(crate) poll_interval: Duration,
    pub(crate) lease: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) retention: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            batches_in_flight: 8,
            claim_size: 200,
            run_size: 10,
            max_attempts: 12,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(10),
            send_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_millis(500),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            retention: Duration::from_secs(4 * 3600),
        }
    }
}

impl RelayConfig {
    /// Starts from the defaults.
    pub fn builder() -> RelayConfigBuilder {
        RelayConfigBuilder {
            config: Self::default(),
        }
    }

    /// How long a claim lasts unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long published rows are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    pub(crate) fn claim_size(&self) -> ClaimSize {
        ClaimSize {
            lanes: self.claim_size.into(),
            run: self.run_size.into(),
        }
    }
}

/// Builds a [`RelayConfig`]; every setting has a default.
#[derive(Debug, Clone)]
#[must_use]
pub struct RelayConfigBuilder {
    config: RelayConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl RelayConfigBuilder {
    setters! {
        /// Claimers in this process, each claiming `claim_size` lanes at a time
        /// (1–32, default 2).
        workers: u16,
        /// Publish calls in flight at once in this process (1–256, default 8).
        batches_in_flight: u16,
        /// Aggregates (lanes) one claimer claims per database round trip
        /// (1–1000, default 200).
        claim_size: u16,
        /// Consecutive events of one aggregate sent in one batch call (1–10,
        /// default 10). A FIFO queue keeps their order within the call; 1 means
        /// a refused entry can never let a later one of its aggregate through first.
        run_size: u16,
        /// Attempts before an event the broker keeps refusing is parked for an
        /// operator (at least 1, default 12).
        max_attempts: i32,
        /// Fallback poll when no notification arrives (at least 10 ms, default 1 s).
        poll_interval: Duration,
        /// How long a claim lasts unless renewed; a crashed relay's events are
        /// taken over after this. Must exceed `send_timeout` by 2 s (default 10 s).
        lease: Duration,
        /// Longest one publish call may take before it counts as failed (default 5 s).
        send_timeout: Duration,
        /// During an outage, how often the oldest event is tried again (default 500 ms).
        probe_interval: Duration,
        /// First retry delay after the broker refused an event; doubles per
        /// attempt, with jitter (default 500 ms).
        backoff_base: Duration,
        /// Longest retry delay (default 60 s).
        backoff_max: Duration,
        /// How long published rows are kept before deletion (default 4 h).
        retention: Duration,
    }

    /// The settings, or the first one that cannot work.
    pub fn build(self) -> Result<RelayConfig, RelayConfigError> {
        let c = self.config;
        for (setting, value, range) in [
            ("workers", u32::from(c.workers), 1..=32),
            ("batches_in_flight", c.batches_in_flight.into(), 1..=256),
            ("claim_size", c.claim_size.into(), 1..=1000),
            ("run_size", c.run_size.into(), 1..=10),
            ("max_attempts", c.max_attempts.max(0) as u32, 1..=u32::MAX),
        ] {
            if !range.contains(&value) {
                return Err(RelayConfigError::OutOfRange {
                    setting,
                    min: *range.start(),
                    max: *range.end(),
                });
            }
        }
        for (setting, value) in [
            ("lease", c.lease),
            ("send_timeout", c.send_timeout),
            ("probe_interval", c.probe_interval),
            ("backoff_base", c.backoff_base),
            ("backoff_max", c.backoff_max),
            ("retention", c.retention),
        ] {
            if value.is_zero() {
                return Err(RelayConfigError::Zero(setting));
            }
        }
        if c.poll_interval < Duration::from_millis(10) {
            return Err(RelayConfigError::PollTooShort(c.poll_interval));
        }
        if c.lease < c.send_timeout + 2 * SEND_MARGIN {
            return Err(RelayConfigError::LeaseTooShort {
                lease: c.lease,
                send_timeout: c.send_timeout,
            });
        }
        if c.backoff_base > c.backoff_max {
            return Err(RelayConfigError::Backoff {
                base: c.backoff_base,
                max: c.backoff_max,
            });
        }
        Ok(c)
    }
}

/// Relay settings that cannot work; [`RelayConfigError::setting`] names the
/// builder method (services map it to their own variable names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayConfigError {
    /// A count outside its range.
    #[error("{setting} must be between {min} and {max}")]
    OutOfRange {
        /// The setting.
        setting: &'static str,
        /// Least value accepted.
        min: u32,
        /// Greatest value accepted.
        max: u32,
    },
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A poll interval short enough to be a busy loop.
    #[error("poll_interval must be at least 10ms (got {0:?}): a shorter one is a busy loop")]
    PollTooShort(Duration),
    /// A lease that cannot hold one send.
    #[error(
        "lease ({lease:?}) must exceed send_timeout ({send_timeout:?}) by at least 2s: a lease that cannot hold one send would let another relay take the events mid-send"
    )]
    LeaseTooShort {
        /// The lease asked for.
        lease: Duration,
        /// The send timeout asked for.
        send_timeout: Duration,
    },
    /// A backoff that starts above its cap.
    #[error("backoff_base ({base:?}) must not exceed backoff_max ({max:?})")]
    Backoff {
        /// The base asked for.
        base: Duration,
        /// The cap asked for.
        max: Duration,
    },
}

impl RelayConfigError {
    /// The builder method of the offending setting.
    pub fn setting(&self) -> &'static str {
        match self {
            Self::OutOfRange { setting, .. } | Self::Zero(setting) => setting,
            Self::PollTooShort(_) => "poll_interval",
            Self::LeaseTooShort { .. } => "lease",
            Self::Backoff { .. } => "backoff_base",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        let config = RelayConfig::builder().build().unwrap();
        assert_eq!(config.lease(), Duration::from_secs(10));
        assert_eq!(config.retention(), Duration::from_secs(4 * 3600));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let refused = |b: RelayConfigBuilder| b.build().unwrap_err().setting();
        let b = RelayConfig::builder;
        assert_eq!(refused(b().lease(Duration::ZERO)), "lease");
        assert_eq!(refused(b().poll_interval(Duration::ZERO)), "poll_interval");
        assert_eq!(
            refused(b().poll_interval(Duration::from_millis(5))),
            "poll_interval"
        );
        assert_eq!(refused(b().lease(Duration::from_secs(6))), "lease");
        assert_eq!(
            refused(b().backoff_base(Duration::from_secs(120))),
            "backoff_base"
        );
        assert_eq!(refused(b().run_size(11)), "run_size");
        assert_eq!(refused(b().workers(0)), "workers");
        assert_eq!(refused(b().max_attempts(0)), "max_attempts");
    }
}
