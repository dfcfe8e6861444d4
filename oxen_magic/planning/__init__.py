"""Planning, pure: the grammar (`options`), prompts, ranges, image references, parameters and what
each model requires, and `Spec` -> `Plan`. No files read, no images decoded, nothing sent.
"""
