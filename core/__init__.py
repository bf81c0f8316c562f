"""nkd core: registry, store, runner, worker and recipes. Never imports a UI library."""
