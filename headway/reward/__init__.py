"""Process reward models: labels, the stage-aware model, training, evaluation, metrics."""
