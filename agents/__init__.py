"""Stream processors: the windowed aggregation agent and the Redis sink agent."""
