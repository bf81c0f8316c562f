"""Which files are audio, by extension: the formats nkd reads (no numpy, for the TUI's start-up)."""

NATIVE = {".wav", ".flac", ".ogg", ".mp3"}  # libsndfile reads these
FFMPEG = {".m4a", ".mp4", ".aac"}  # decoded through ffmpeg when it is installed
EXTENSIONS = NATIVE | FFMPEG
