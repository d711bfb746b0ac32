"""Workflows over the clients: kits (learnt templates), tracking (events from activations) and
jobs (file in, folder out: what the command line, the web page and the batch runner run)."""
