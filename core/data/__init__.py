"""Audio data: reading files, the prepared-audio cache, the noise clip index, MUSDB-style track
folders, `nkd data prepare`, log-mel features, in-memory batches and demo folders."""
