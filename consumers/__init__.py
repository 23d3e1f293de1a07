"""The rulebooks: one module per tab, pure functions from (state, message, now) to state."""
