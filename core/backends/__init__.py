"""Where runs execute besides this box: Slurm (`[backends.slurm]`, `backend = "slurm"`)."""
