"""The labelloop DAGs and their entry points (`python -m pipelines --help`)."""
