"""What happens to runs: launched (folder, config, placement), controlled, found (status, lost,
references), planned (chains, sweeps), made ad hoc (eval, blend, import), annotated, drawn as
lineage; and what a recipe gets (context)."""
