"""Command-line sub-commands (thin: they parse options and call the library)."""
