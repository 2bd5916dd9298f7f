"""Dataset loaders: BDD100K labels (det_20 and 2018), BDD-X sentences, Cityscapes polygons, synthetic frames.

Each loader turns its files, as released, into the `records` every other module reads (`FrameRecord`, `Box`,
`LoadReport`), refusing files over the limits in `records` with an error that names the file.
"""
