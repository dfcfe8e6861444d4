"""What the user gets back: `Results` and `Item`, written only by the run that produces them; their
methods hand off to the exports and the display.
"""
