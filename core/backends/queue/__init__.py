"""The GPU-aware queue of one workspace: placement (which GPUs a run gets, or why it waits) and
the scheduler (claims queued runs and starts their workers). Its settings are the registry's
`[queue]` table (core.registry.queue); chains and sweeps are planned in core.runs."""
