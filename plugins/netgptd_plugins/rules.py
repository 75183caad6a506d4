"""Rule detectors plugin: flood and sweep alerts from flow rates (netgptd.rules)."""

from __future__ import annotations

from typing import Any

from netgptd.plugin_host import hookimpl
from netgptd.rules import FlowRateRules, RuleSettings


class RulesPlugin:
    SETTINGS = RuleSettings  # what [plugins.rules] may set (checked by the plugin host)

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(RuleSettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}")
        self.rules = FlowRateRules(RuleSettings(**settings))

    @hookimpl
    def netgpt_event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self.rules.observe(event)

    @hookimpl
    def netgpt_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        observe = self.rules.observe
        return [alert for event in events for alert in observe(event)]

    @hookimpl
    def netgpt_status(self) -> dict[str, Any]:
        """Windows tracked, evicted and sketched by rule, and the cool-downs (the bounds a flood presses on)."""
        return self.rules.status()
