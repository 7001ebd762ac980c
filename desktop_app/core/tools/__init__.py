"""Tools: the tool loop around the engine's stream, and the MCP client that runs them."""
