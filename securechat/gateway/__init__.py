"""The HTTP edge: FastAPI routes over an orchestrator backend (a Ray handle in production, in-process in tests)."""
