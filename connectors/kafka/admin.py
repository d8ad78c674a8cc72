"""Topic administration: create the contract's topics with explicit
partition counts (brokers such as Tansu auto-create unknown topics with
their own default, so topics must exist before anyone produces)."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka.errors import KafkaConnectorError, KafkaUnavailable


def _admin(config: dict[str, str]) -> AdminClient:
    # Connection failures are reported once, as KafkaUnavailable, not as
    # librdkafka's per-retry log lines.
    return AdminClient({"log_level": 0, **config, "socket.timeout.ms": 5000})


def ping(config: dict[str, str], timeout_s: float = 3.0) -> None:
    """Raise ``KafkaUnavailable`` unless a broker answers a metadata request."""
    try:
        _admin(config).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answered at {config.get('bootstrap.servers')}"
        ) from exc


def ensure_topics(
    config: dict[str, str], partitions: dict[str, int], timeout_s: float = 15.0
) -> list[str]:
    """Create missing topics; return the names created. Existing topics are
    left alone (their partition count is reported by ``describe_topics``)."""
    admin = _admin(config)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answered at {config.get('bootstrap.servers')}"
        ) from exc
    wanted = [
        NewTopic(name, num_partitions=count, replication_factor=-1)
        for name, count in partitions.items()
        if name not in existing
    ]
    if not wanted:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise KafkaConnectorError(f"cannot create topic {name}: {exc}") from exc
    return created


def describe_topics(config: dict[str, str], timeout_s: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    try:
        metadata = _admin(config).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answered at {config.get('bootstrap.servers')}"
        ) from exc
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def delete_topics(config: dict[str, str], names: list[str], timeout_s: float = 15.0) -> None:
    if not names:
        return
    for future in _admin(config).delete_topics(names, request_timeout=timeout_s).values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc):
                raise KafkaConnectorError(str(exc)) from exc
