"""What an evaluation keeps to be seen and heard: per-track (or per-class) results, short
excerpts as FLAC and small quantised spectrograms, in `runs/<id>/results/<split>/`, with one
`results.json` that the TUI, `nkd results`, `nkd listen` and `nkd report` read (numpy and the
standard library only: no torch)."""
