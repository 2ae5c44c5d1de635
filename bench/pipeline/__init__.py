"""The pipeline: what happens to one run. Set up (seeds, data, backbone, method), train
(resumable, the method's stages), predict every exit on the held-out and test splits,
compute metrics from the saved logits, write everything through the store; and the tuning
objective and studies, which reuse the same set-up.

Modules: setup, train, predict, evaluation, runner, tuning, distributed (torchrun),
claims (file locks shared by workers), progress (terminal output).
"""
