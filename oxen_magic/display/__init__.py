"""What a notebook shows: thumbnails, the grid as HTML, the live grid, the model table, the contact
sheet. Reads results; does no HTTP.
"""
