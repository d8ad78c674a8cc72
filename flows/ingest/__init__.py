"""Market-data ingest: validate -> de-duplicate -> consolidate providers ->
1-minute candles. Every step works on one Kafka partition's batch per call."""
