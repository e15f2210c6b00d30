"""Model runtimes behind one contract (``Engine``)."""
