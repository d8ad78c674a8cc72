"""Where data comes from: Kafka, quote providers, simulators, replays."""
