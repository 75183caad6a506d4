"""The application vocabulary of operator intents: nDPI's names, grouped into products, with everyday aliases.

``apps.json`` (shipped) holds nDPI 4.2's 281 protocol names (``ndpiReader -a
0``) grouped into 262 *products* (a product's name is its first nDPI name,
e.g. ``Teams`` = Teams + Skype_Teams), the words operators use for them
(``"zoom calls"``, ``"torrents"``, ``"remote desktop"``) and *categories*
(``"video calls"``, ``"social media"``, ``"p2p"``) that stand for several
products. An intent always lists nDPI names; whether the sensor's own traffic
model can recognise them today is a separate question (:func:`unobservable`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

APPS_FILE = Path(__file__).with_name("apps.json")
WORD = re.compile(r"[a-z0-9]+(?:[+.'/][a-z0-9]+)*\+?")


def words_of(text: str) -> list[str]:
    """Lower-case words as the lexicon and the sentence matcher see them (``disney+``, ``h.323``, ``ethernet/ip`` kept
    whole; a hyphen separates: ``dns-over-https`` is ``dns over https``)."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class Lexicon:
    """Products (name -> nDPI names), categories (name -> products) and phrases (word tuple -> product or ``category:NAME``)."""

    products: dict[str, list[str]]
    categories: dict[str, list[str]]
    phrases: dict[tuple[str, ...], str]
    longest: int  # words in the longest phrase

    def ndpi_names(self, ref: str) -> list[str]:
        """The nDPI names a product or ``category:NAME`` stands for."""
        if ref.startswith("category:"):
            return [n for p in self.categories[ref[9:]] for n in self.products[p]]
        return list(self.products[ref])


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    data = json.loads(APPS_FILE.read_text(encoding="utf-8"))
    products = data["products"]
    phrases: dict[tuple[str, ...], str] = {}
    not_words = {(w,) for w in data["not_words"]}  # names that are everyday words ("fix", "imo"): only their aliases count
    for product, names in products.items():
        for name in [product, *names]:
            spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", name)  # GoogleDrive -> google drive, MS_OneDrive -> ms one drive
            for form in (name, spaced):
                key = tuple(words_of(form))
                if key and key not in not_words:
                    phrases.setdefault(key, product)
    for product, aliases in data["aliases"].items():
        for alias in aliases:
            phrases[tuple(words_of(alias))] = product
    categories = {}
    for name, cat in data["categories"].items():
        categories[name] = list(cat["products"])
        for alias in [name, *cat["aliases"]]:
            phrases[tuple(words_of(alias))] = f"category:{name}"
    return Lexicon(products, categories, phrases, max(len(k) for k in phrases))


TRAFFIC_MODEL_MANIFEST = Path(__file__).resolve().parent.parent / "model" / "default" / "manifest.json"


@lru_cache(maxsize=1)
def traffic_model_apps() -> frozenset[str]:
    """The application labels of the shipped traffic model (its manifest: no model is loaded)."""
    return frozenset(json.loads(TRAFFIC_MODEL_MANIFEST.read_text(encoding="utf-8"))["apps"]) - {"unknown"}


def unobservable(ndpi_names: list[str]) -> list[str]:
    """The names among ``ndpi_names`` that the shipped traffic model cannot name (another sensor or DPI must)."""
    known = traffic_model_apps()
    return [n for n in ndpi_names if n not in known]
