"""Named search spaces (TOML data files) and the sampler that turns them into ResNet specs."""
