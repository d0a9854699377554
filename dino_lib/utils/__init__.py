"""Small, specific utilities (no grab-bag): safe I/O, seeding, timing."""
