"""The GPU-aware queue of one workspace: its settings, placement, the scheduler, sweeps."""
