"""The HTTP face of the server: app factory, request parsing, dispatch and response rendering."""
