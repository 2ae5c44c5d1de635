"""Suite texts shared by tests that drive the command line."""

# Two methods on chain_tiny over 160 synthetic 16x16 images, 3 epochs: seconds per run.
TINY = """
name: tiny
dataset:
  name: synthetic
  heldout: 64
  options: {train_size: 160, test_size: 64, image_size: 16}
backbones:
  - {name: chain_tiny, overrides: {image_size: 16}}
methods: [joint, boostnet]
seeds: [0]
training:
  epochs: 3
  batch_size: 32
  device: cpu
budgets:
  fractions: [0.7, 0.9]
"""
