"""Small pieces every layer may use: names that become paths, atomic file writes, sha256,
CPU threads of a worker, audio file extensions. Imports only core.errors."""
