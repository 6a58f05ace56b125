"""ddpui: orchestration backend (Django system of record and v1 API)."""
