"""facelib: the reference companion to FACE (mapping CF embeddings into LLM tokens).

Importing facelib has no side effects: no files are read, no seeds are set, no models load.
"""

__version__ = "0.1.0"
