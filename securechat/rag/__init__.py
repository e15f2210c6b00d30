"""Retrieval inside the enclave: sealed collections, chunking, embedding and search that only workers read."""
