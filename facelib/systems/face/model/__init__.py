"""The FACE module and its parts, one paper concept each (what the face stage trains)."""
