"""The edge side of NetGPT's cloud-edge split: prompt completion, redaction, a cloud client, a local server.

* :mod:`netgptd.cloud.context` completes an operator's short question into a
  full prompt from what the sensor knows (site profile, current state, recent
  alerts). It is a template, not a model: honest and predictable. Events of
  an edge intent model (``event_type: intent``), when one runs, are added to
  the context as they come.
* :mod:`netgptd.cloud.redact` replaces IPv4, IPv6 and MAC addresses by stable
  placeholders (``HOST-1``, ``MAC-1``) before a prompt leaves the sensor, and
  maps them back in the answer, for local display only.
* :mod:`netgptd.cloud.client` talks to any OpenAI-compatible
  ``/v1/chat/completions`` (stdlib only: timeouts, retries with backoff).
* :mod:`netgptd.cloud.serve` is ``netgptd serve-llm``: a local Hugging Face
  causal LM behind the same API, for a lab or a test (vLLM is the
  production engine with that API).
"""
