"""What users import: decorators, types, intrinsics and the simulator (no compiler here)."""
