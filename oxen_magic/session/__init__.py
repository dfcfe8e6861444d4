"""The session and the pipeline: process state (`Session`), prepare -> `Run` -> execute, the runner
that sends through the cache, the claims and the congestion window, and the spend ledger.
"""
