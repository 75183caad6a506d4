"""Pure flow tracking: bidirectional table, timeouts, Community ID."""
