"""What only tests and benchmarks use (not the workflow): random bases and the rehearsal."""
