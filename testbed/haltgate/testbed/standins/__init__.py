"""Stand-in upstreams for tests and benchmarks: an LLM API, an MCP server, a plain HTTP API.

They stand for what is *outside* haltgate (OpenAI/Anthropic-style APIs, MCP servers, HTTP
tools), answer deterministically (the same request gives the same bytes, usage numbers
follow from the request) and record what they received, so tests can prove what was and
was not forwarded. Each is an aiohttp app factory, and runnable on its own:

    python -m haltgate.testbed.standins.llm --host 127.0.0.1 --port 8001
    python -m haltgate.testbed.standins.mcp --host 127.0.0.1 --port 8002
    python -m haltgate.testbed.standins.http_api --host 127.0.0.1 --port 8003

Test-only behaviours are chosen per request with the ``x-standin-behavior`` header
(see each module). ``GET /_standin/requests`` returns what was received,
``DELETE /_standin/requests`` forgets it.
"""

from haltgate.testbed.standins._common import RECORDED, Recorded, serve

__all__ = ["RECORDED", "Recorded", "serve"]
