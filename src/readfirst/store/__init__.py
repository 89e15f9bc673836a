"""The journal: one SQLite schema with versioned migrations, and the tables' readers and writers."""
