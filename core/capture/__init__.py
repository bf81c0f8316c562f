"""What a command experiment reports: `@nkd` records from its output (patterns, TensorBoard and
checkpoint globs will join them here)."""
