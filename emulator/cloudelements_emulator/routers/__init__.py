"""One router per API area (reference §2 platform, §3 hub, §4 bulk, §5 events) plus admin routes."""
