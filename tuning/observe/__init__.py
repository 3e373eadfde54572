"""What a running search shows: progress lines and the live status line (`progress`), and the
TensorBoard runs and HParams dashboard (`tensorboard`)."""
