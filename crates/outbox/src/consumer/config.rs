//! The consumer's settings: defaults, a builder, and
//! [`ConsumerConfigBuilder::build`] refusing what SQS would refuse.

use std::time::Duration;

/// Validated consumer settings; see [`ConsumerConfig::builder`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub(crate) concurrency: u16,
    pub(crate) max_messages: i32,
    pub(crate) wait_time: Duration,
    pub(crate) visibility_timeout: Duration,
    pub(crate) handler_timeout: Duration,
    pub(crate) inbox_retention: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_messages: 10,
            wait_time: Duration::from_secs(20),
            visibility_timeout: Duration::from_secs(30),
            handler_timeout: Duration::from_secs(60),
            inbox_retention: Duration::from_secs(15 * 24 * 3600),
        }
    }
}

impl ConsumerConfig {
    /// Starts from the defaults.
    pub fn builder() -> ConsumerConfigBuilder {
        ConsumerConfigBuilder {
            config: Self::default(),
        }
    }

    /// The long-polling wait per receive.
    pub fn wait_time(&self) -> Duration {
        self.wait_time
    }

    /// How long inbox entries are kept.
    pub fn inbox_retention(&self) -> Duration {
        self.inbox_retention
    }
}

/// Builds a [`ConsumerConfig`]; every setting has a default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConsumerConfigBuilder {
    config: ConsumerConfig,
}

impl ConsumerConfigBuilder {
    /// Receive loops running at once (1–64, default 4).
    pub fn concurrency(mut self, loops: u16) -> Self {
        self.config.concurrency = loops;
        self
    }

    /// Messages per receive (1–10, default 10).
    pub fn max_messages(mut self, messages: i32) -> Self {
        self.config.max_messages = messages;
        self
    }

    /// Long-polling wait per receive (0–20 s, default 20 s).
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.config.wait_time = wait;
        self
    }

    /// Visibility timeout asked for on receive, extended while a message is
    /// handled (1 s–12 h, whole seconds, default 30 s).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.config.visibility_timeout = timeout;
        self
    }

    /// Longest one handler may take for one message; then it counts as failed
    /// and its visibility is no longer extended (1 s–12 h, default 60 s).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.config.handler_timeout = timeout;
        self
    }

    /// How long the inbox remembers an event (default 15 days, longer than
    /// SQS's longest retention of 14 days). A copy arriving later is applied
    /// again: keep it longer than any copy can take to arrive, DLQ redrives
    /// included.
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.config.inbox_retention = retention;
        self
    }

    /// The settings, or the first one that cannot work.
    pub fn build(self) -> Result<ConsumerConfig, ConsumerConfigError> {
        let c = self.config;
        let range = |setting, ok: bool, rule| {
            if ok {
                Ok(())
            } else {
                Err(ConsumerConfigError { setting, rule })
            }
        };
        range(
            "concurrency",
            (1..=64).contains(&c.concurrency),
            "must be between 1 and 64",
        )?;
        range(
            "max_messages",
            (1..=10).contains(&c.max_messages),
            "must be between 1 and 10 (the SQS limit)",
        )?;
        range(
            "wait_time",
            c.wait_time <= Duration::from_secs(20),
            "must be at most 20s (the SQS long-polling limit)",
        )?;
        let hours12 = Duration::from_secs(12 * 3600);
        range(
            "visibility_timeout",
            c.visibility_timeout >= Duration::from_secs(1) && c.visibility_timeout <= hours12,
            "must be between 1s and 12h",
        )?;
        range(
            "handler_timeout",
            c.handler_timeout >= Duration::from_secs(1) && c.handler_timeout <= hours12,
            "must be between 1s and 12h",
        )?;
        range(
            "inbox_retention",
            c.inbox_retention >= Duration::from_secs(3600),
            "must be at least 1h",
        )?;
        Ok(c)
    }
}

/// A consumer setting that cannot work; `setting` names the builder method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} {rule}")]
pub struct ConsumerConfigError {
    /// The builder method of the offending setting.
    pub setting: &'static str,
    /// What it must be.
    pub rule: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_limits_are_refused_by_name() {
        ConsumerConfig::builder().build().unwrap();
        let refused = |b: ConsumerConfigBuilder| b.build().unwrap_err().setting;
        let b = ConsumerConfig::builder;
        assert_eq!(refused(b().max_messages(11)), "max_messages");
        assert_eq!(refused(b().wait_time(Duration::from_secs(21))), "wait_time");
        assert_eq!(
            refused(b().visibility_timeout(Duration::ZERO)),
            "visibility_timeout"
        );
        assert_eq!(
            refused(b().handler_timeout(Duration::ZERO)),
            "handler_timeout"
        );
        assert_eq!(refused(b().concurrency(0)), "concurrency");
    }
}
