"""Candidate agents and the sandbox that runs their untrusted code."""
