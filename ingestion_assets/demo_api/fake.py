"""Small lookup tables and id codecs used to render records cheaply.

Every field of a record is picked from a table with bits of the record's 64-bit
hash, so rendering is a handful of integer operations per field.
"""

from __future__ import annotations

from .data import M64

FIRST = (
    "Ada Alan Grace Linus Barbara Dennis Ken Margaret Edsger Donald Frances Radia "
    "John Guido Yukihiro Anders Brian Bjarne Katherine Tim Hedy Niklaus Sophie Rosalind "
    "Claude Ivan Leslie Shafi Whitfield Adele Jean Mary"
).split()
LAST = (
    "Lovelace Turing Hopper Torvalds Liskov Ritchie Thompson Hamilton Dijkstra Knuth "
    "Allen Perlman McCarthy Rossum Matsumoto Hejlsberg Kernighan Stroustrup Johnson "
    "Berners-Lee Lamarr Wirth Wilson Franklin Shannon Sutherland Lamport Goldwasser "
    "Diffie Goldberg Sammet Keller"
).split()
COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "CA", "NL", "SE", "JP", "AU", "BR", "ES", "IT", "IE", "PL")
CITIES = (
    "Springfield", "Riverside", "Fairview", "Greenville", "Bristol", "Salem", "Madison",
    "Georgetown", "Franklin", "Clinton", "Arlington", "Ashland", "Dover", "Oxford", "Milton",
    "Newport",
)
STREETS = ("Main St", "Oak Ave", "Pine Rd", "Maple Dr", "Cedar Ln", "Elm St", "Lake Rd", "Hill St")
DOMAINS = ("example.com", "example.org", "example.net", "mail.test")
CURRENCIES = ("usd", "usd", "usd", "usd", "eur", "eur", "gbp", "cad")
WORDS = (
    "alpha beta gamma delta orbit comet nova pixel quark lambda vector matrix cobalt "
    "ember falcon harbor iris juniper kepler lumen meadow nimbus onyx prism quill "
    "raven sierra tundra umbra vortex willow zephyr"
).split()
PRODUCTS = (
    "Mug", "T-Shirt", "Hoodie", "Sticker Pack", "Notebook", "Water Bottle", "Cap", "Tote Bag",
    "Poster", "Socks", "Keyboard", "Mouse Pad", "Lamp", "Backpack", "Pen Set", "Headphones",
)

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_INDEX = {c: i for i, c in enumerate(_B62)}
_MUL = 0x9E3779B97F4A7C15  # odd, so multiplication is a bijection modulo 2**64
_MUL_INV = pow(_MUL, -1, 1 << 64)


def b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out))


def unb62(s: str) -> int:
    n = 0
    for c in s:
        n = n * 62 + _B62_INDEX[c]
    return n


class IdCodec:
    """Stripe-like opaque ids (``ch_3KqG...``) that decode back to a record index.

    The index is scrambled by an invertible multiply/xor, so ids look random yet
    a ``starting_after`` cursor maps to its record by arithmetic. A per-seed tag
    makes ids of different seeds different and rejects most garbage.
    """

    def __init__(self, prefix: str, seed: int) -> None:
        self.prefix = prefix
        self.key = seed & M64
        self.tag = b62(seed >> 1, 12)

    def encode(self, idx: int) -> str:
        return f"{self.prefix}{b62(((idx * _MUL) & M64) ^ self.key, 11)}{self.tag}"

    def decode(self, token: str) -> int | None:
        body = token[len(self.prefix):] if token.startswith(self.prefix) else None
        if body is None or len(body) != 23 or body[11:] != self.tag:
            return None
        try:
            p = unb62(body[:11])
        except KeyError:
            return None
        if p > M64:
            return None
        return ((p ^ self.key) * _MUL_INV) & M64
