"""Stage 1-3a: read capture records and run the compiled decode/track engine."""
