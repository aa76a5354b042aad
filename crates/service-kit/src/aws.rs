//! What a service needs from AWS, checked at start-up: a region, and the queue.
//!
//! A queue that SQS says does not exist is a misconfiguration: the service
//! refuses to start, naming the setting. An SQS that does not answer at all is
//! an outage, not a misconfiguration: the service starts (bookings are accepted
//! and wait in the outbox; the consumer keeps trying), and says so once.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;

/// How long the start-up check waits for SQS before calling it an outage.
pub const QUEUE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses a client without a region (none in `AWS_REGION`, nor in the
/// profile): no SQS call could ever be signed.
pub fn require_region(client: &Client) -> anyhow::Result<()> {
    if client.config().region().is_none() {
        anyhow::bail!(
            "no AWS region: set AWS_REGION (or a region in the AWS_PROFILE's configuration); SQS cannot be called without one"
        );
    }
    Ok(())
}

/// Asks SQS whether the queue exists: `GetQueueAttributes` for a URL, `GetQueueUrl`
/// for a name; `variables` name the two settings (`SQS_QUEUE_URL`,
/// `SQS_QUEUE_NAME`, say). A queue SQS says does not exist is an error naming
/// the setting used. No answer within
/// [`QUEUE_CHECK_TIMEOUT`] (or another error) is logged once, as a WARN that
/// ends with `meanwhile` (what the service does until SQS answers), and the
/// service starts.
pub async fn check_queue(
    client: &Client,
    url: Option<&str>,
    name: Option<&str>,
    (url_variable, name_variable): (&str, &str),
    meanwhile: &str,
) -> anyhow::Result<()> {
    let (setting, value) = match (url, name) {
        (Some(url), _) => (url_variable, url),
        (None, Some(name)) => (name_variable, name),
        (None, None) => {
            anyhow::bail!("no queue configured: set {url_variable} or {name_variable}")
        }
    };
    let asked = async {
        match url {
            Some(url) => client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map(drop)
                .map_err(Said::from_sdk),
            None => client
                .get_queue_url()
                .queue_name(value)
                .send()
                .await
                .map(drop)
                .map_err(Said::from_sdk),
        }
    };
    let answer = match tokio::time::timeout(QUEUE_CHECK_TIMEOUT, asked).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(answer)) => answer,
        Err(_) => Said::Silence(format!("no answer within {QUEUE_CHECK_TIMEOUT:?}")),
    };
    match answer {
        Said::NoSuchQueue(said) => anyhow::bail!(
            "{setting} {value:?}: SQS says the queue does not exist ({said}); create it, or correct {setting}"
        ),
        Said::Silence(error) | Said::Other(error) => {
            tracing::warn!(%error, queue = value,
                "SQS does not answer at start; starting anyway: {meanwhile}");
            Ok(())
        }
    }
}

/// What SQS said, when not a success (silence included).
enum Said {
    NoSuchQueue(String),
    Silence(String),
    Other(String),
}

impl Said {
    fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let text = match err.code() {
            Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
            None => crate::error::chain(&err),
        };
        match &err {
            SdkError::ServiceError(service)
                if service.err().code().is_some_and(|c| {
                    c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
                }) =>
            {
                Self::NoSuchQueue(text)
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Self::Silence(text),
            _ => Self::Other(text),
        }
    }
}
