"""What a command experiment reports: the script run and followed (command), `@nkd` records,
printed log shapes, TensorBoard scalars, checkpoints by name and `{pretrained}` as a path."""
