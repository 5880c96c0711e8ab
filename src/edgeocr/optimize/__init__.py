"""Speed-ups for deployment: quantisation, pruning, engines, and torch/GPU versions of core steps (needs torch)."""
