"""Thin Ray Serve wrappers over the securechat core, and the application builder."""
