"""One module per API resource (STYLE.md §10): each parses, calls the engine, and renders."""
