"""File-level step functions, one module per pipeline stage (the components call these)."""
