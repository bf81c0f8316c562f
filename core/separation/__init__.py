"""Music source separation on STFT magnitudes: CRNN and U-Net CRNN, BSS Eval, blends."""
