"""Stage 6: renderers (terminal, JSON)."""
