//! Start-up check of the configured topics: a misspelt name must fail loudly.

use std::time::Duration;

use coupon_core::{Error, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::KafkaConfig;
use crate::error::{BACKEND, classify};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes sure the ticket topic (with `config.partitions` partitions) and the dead-letter
/// topic exist, creating them when `config.create_topics` is set.
pub(crate) async fn ensure_topics(config: &KafkaConfig) -> Result<()> {
    let mut missing = Vec::new();
    for (topic, partitions) in [
        (config.topic.as_str(), config.partitions),
        (config.dead_letter_topic.as_str(), 1),
    ] {
        match partitions_of(config, topic).await? {
            Some(found) if topic == config.topic && found != config.partitions => {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "topic {topic:?} has {found} partitions, the configuration expects {}",
                        config.partitions
                    ),
                    None,
                ));
            }
            Some(_) => {}
            None => missing.push((topic, partitions)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !config.create_topics {
        let names: Vec<&str> = missing.iter().map(|(topic, _)| *topic).collect();
        return Err(Error::backend(
            BACKEND,
            format!(
                "topic(s) {names:?} do not exist on {}: create them, fix the name, or enable create_topics",
                config.brokers
            ),
            None,
        ));
    }
    create(config, &missing).await
}

/// Partitions of `topic`, or `None` if the cluster does not have it. Reads the metadata
/// of every topic, so that asking never auto-creates one on brokers that allow it.
async fn partitions_of(config: &KafkaConfig, topic: &str) -> Result<Option<i32>> {
    let client: BaseConsumer = config
        .client()
        .create()
        .map_err(|e| classify(e, || "creating a metadata client".into()))?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = client
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| classify(e, || format!("reading metadata for topic {topic:?}")))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32))
    })
    .await
    .map_err(|e| Error::backend(BACKEND, "metadata task failed", Some(e.into())))?
}

async fn create(config: &KafkaConfig, topics: &[(&str, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(|e| classify(e, || "creating an admin client".into()))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|&(name, partitions)| NewTopic::new(name, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|e| classify(e, || format!("creating topics {topics:?}")))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            // Another process created it first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::backend(
                    BACKEND,
                    format!("creating topic {name:?} failed: {code}"),
                    None,
                ));
            }
        }
    }
    Ok(())
}
