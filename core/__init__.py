"""nkd core, in layers (README, "Architecture"): errors, util, registry, store, backends, runs,
capture, data, training, the recipe families, the worker. Never imports a UI library."""
