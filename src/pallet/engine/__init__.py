"""The engine: containers made from images, run through an OCI runtime as a subprocess."""
