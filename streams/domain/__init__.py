"""Framework-free domain core: pure state transitions and business rules (no faust, redis or prometheus)."""
