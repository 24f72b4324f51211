"""Local training: features, the scikit-learn model, and the train step's evaluation."""
