"""Experiments that train and test many models: one resumable runner, the cross-dataset
matrices, the preprocessing designs, their statistics, and held-out scoring of a model folder
(the numbers of the model cards)."""
