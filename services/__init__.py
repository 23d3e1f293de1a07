"""The runtime around the rulebooks: broker, database, clock and process entry points."""
