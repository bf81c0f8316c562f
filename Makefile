# Habitual entry points. The first target that needs it builds .venv: torch is installed alone
# first, pinned, so a CPU-only machine takes the local CPU build and never pulls CUDA wheels.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: setup demo test test-fast lint bench snapshot-update clean

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	@# the build's own notices (setuptools' editable-install warning) go to a log, shown on failure.
	@# compat mode: the project's folder as a plain sys.path entry; the default import finder
	@# costs every Python started in .venv about 30 ms (nkd itself, its workers, the scripts)
	@$(PY) -m pip install --quiet -e ".[dev]" --config-settings editable_mode=compat \
		> .venv/install.log 2>&1 || { cat .venv/install.log; exit 1; }
	touch $(VENV_STAMP)

setup: $(VENV_STAMP)

# the main job: a procedurally made noise set, a live mark1 teacher run, then the TUI, which
# shows what the first two printed in a notice (it would otherwise cover it)
demo: $(VENV_STAMP)
	@out="$$(.venv/bin/nkd data synth noise && .venv/bin/nkd run mark1 --detach)" \
		|| { echo "$$out"; exit 1; }; \
	echo "$$out"; \
	.venv/bin/nkd tui --message "$$out"

test: $(VENV_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=25

# the edit loop's tier: schema, store, layers, the loop's units (about a minute on 2 cores)
test-fast: $(VENV_STAMP)
	$(PY) -m pytest -q tests/test_boundaries.py tests/test_registry.py tests/test_store.py \
		tests/test_best_epoch.py tests/test_noise_units.py tests/test_capture.py

lint: $(VENV_STAMP)
	.venv/bin/ruff check core nkd_tui tests bench examples

bench: $(VENV_STAMP)
	$(PY) bench/store_bench.py
	$(PY) bench/tui_bench.py
	$(PY) bench/provenance_bench.py
	$(PY) bench/results_bench.py
	$(PY) bench/features_bench.py
	$(PY) bench/sdr_bench.py
	$(PY) bench/bsseval_content_bench.py
	$(PY) bench/disk_bench.py
	$(PY) bench/lost_race.py
	$(PY) bench/queue_bench.py
	$(PY) bench/halving_bench.py
	$(PY) bench/capture_bench.py
	$(PY) bench/data_bench.py
	$(PY) bench/epoch_bench.py
	$(PY) bench/separation_quality.py --quick

snapshot-update: $(VENV_STAMP)
	$(PY) -m pytest -q --snapshot-update

clean:
	rm -rf .venv .pytest_cache .ruff_cache
