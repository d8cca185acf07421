"""Dockerfile builds: the parser (dockerfile, shell), build contexts and .dockerignore (context,
ignore), the builder and its cache (builder, cache). See docs/design/build.md."""
