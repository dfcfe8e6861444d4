"""Front ends: the magic, the panel, `generate()`, the `oxen-image` command, `doctor()` and the
exercise checks. Each builds a Spec, asks the session to prepare a run, executes it and shows what
comes back; none holds state or logic of its own.
"""
