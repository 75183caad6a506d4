"""The edge side of NetGPT's cloud-edge split: prompt completion, redaction, a cloud client, a local server.

* :mod:`netgptd.cloud.context` completes an operator's short question into a
  full prompt from what the sensor knows (site profile, current state, recent
  alerts). It is a template, not a model: honest and predictable. Events of
  an edge intent model (``event_type: intent``), when one runs, are added to
  the context as they come.
* :mod:`netgptd.cloud.redact` replaces IPv4, IPv6 and MAC addresses by stable
  placeholders (``HOST-1``, ``MAC-1``) before a prompt leaves the sensor; the
  answers published use the same placeholders unless that is turned off.
* :mod:`netgptd.cloud.client` talks to any OpenAI-compatible
  ``/v1/chat/completions`` (stdlib only: timeouts, retries with backoff).
* The ask channel (the ``ask`` plugin): :mod:`netgptd.cloud.requests`
  parses requests (malformed ones are named, not fatal) and builds answers;
  :mod:`netgptd.cloud.signing` checks their HMAC signatures, time window and
  nonces; :mod:`netgptd.cloud.admission` adds per-requester token buckets;
  :mod:`netgptd.cloud.guard` says which intents would cut the site off and
  need a confirmation; :mod:`netgptd.cloud.ask_cli` is ``netgptd ask``.
* :mod:`netgptd.cloud.serve` is ``netgptd serve-llm``: a local Hugging Face
  causal LM behind the same API, for a lab or a test (vLLM is the
  production engine with that API).
"""
