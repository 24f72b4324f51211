"""Active learning: score an unlabeled pool by the model's uncertainty and pick the next batch."""
