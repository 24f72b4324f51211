"""Label quality: agreement metrics and consolidation. Arrays in, arrays out."""
