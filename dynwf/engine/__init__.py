"""The durable engine: instance state machine, step semantics, replay, scheduling."""
