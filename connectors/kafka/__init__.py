"""Plain-Kafka plumbing on confluent-kafka: works against Apache Kafka,
Redpanda and Tansu alike (no broker-specific calls)."""

from connectors.kafka.errors import KafkaConnectorError, KafkaDeliveryError, KafkaUnavailable

__all__ = ["KafkaConnectorError", "KafkaDeliveryError", "KafkaUnavailable"]
