"""What is computed: Bytewax dataflows and the pure logic they run."""
