"""Real servers and helpers that integration tests start on free ports with their own data."""
