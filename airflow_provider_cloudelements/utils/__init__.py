"""Small pure helpers shared by the hook, operators, sensors and triggers."""
