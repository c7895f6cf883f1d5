"""The verl seam: the plugin verl imports, the CPU platform, device fallbacks, every patch of verl/transformers, Ulysses under sdpa."""
