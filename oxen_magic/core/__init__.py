"""What every layer shares: the error types and sentences, input checks, whole-file writes, daemon
threads and money.
"""
