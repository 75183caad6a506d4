"""netgptd: real-time network intelligence daemon (flows, NetGPT, edge LLM)."""

__version__ = "0.1.0"
