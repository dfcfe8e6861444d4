"""Files and repositories written from results: PNGs and contact sheets, the HTML gallery, Oxen
repositories, offline packs and handouts. Every file is written whole (`core.atomic`).
"""
