"""Kafka errors translated at the boundary."""

from __future__ import annotations


class KafkaConnectorError(Exception):
    """Base of Kafka failures raised by Folio Stream."""


class KafkaUnavailable(KafkaConnectorError):
    """The brokers cannot be reached in time."""


class KafkaDeliveryError(KafkaConnectorError):
    """A produced message was not acknowledged by the broker."""
