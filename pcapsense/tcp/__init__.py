"""Stage 3: TCP connection tracking (state tables, connection table, Zeek view)."""
