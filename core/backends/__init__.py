"""Where a worker runs and how it is found alive: this box (local: started in its own session,
procs, liveness, GPUs), the queue (placement and the scheduler) and Slurm. Imports the store and
below, never core.runs: whoever needs more passes it down."""
