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



def _person(h: int) -> tuple:
    first = FIRST[h & 31]
    last = LAST[(h >> 5) & 31]
    email = f"{first.lower()}.{last.lower()}{(h * 7919) % 1000}@{DOMAINS[(h >> 10) & 3]}"
    address = {
        "city": CITIES[(h * 31) & 15],
        "country": COUNTRIES[(h * 17 >> 3) & 15],
        "line1": f"{(h * 131) % 997 + 1} {STREETS[(h >> 3) & 7]}",
        "line2": None,
        "postal_code": f"{(h * 7877) % 90000 + 10000}",
        "state": None,
    }
    return f"{first} {last}", email, address


#: 4096 precomputed people (name, email, address): a record picks one with 12 hash bits.
#: Shared dicts are fine for serialisation; schema changes copy before they write.
PEOPLE = [_person(h) for h in range(4096)]

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


_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # alphanumerics only, like vendor ids
_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> two characters, one lookup
_PAIR_INDEX = {p: i for i, p in enumerate(_PAIRS)}


class IdCodec:
    """Stripe-like opaque ids (``ch_3KQG...``) that decode back to a record index.

    The index is scrambled by an invertible multiply/xor, so ids look random yet
    a ``starting_after`` cursor maps to its record by arithmetic. A per-seed tag
    makes ids of different seeds different and rejects most garbage. Encoding is
    seven table look-ups (no division), since it runs for every rendered record.
    """

    def __init__(self, prefix: str, seed: int) -> None:
        self.prefix = prefix
        self.key = seed & M64
        self.tag = b62(seed >> 1, 10)

    def encode(self, idx: int) -> str:
        p = ((idx * _MUL) & M64) ^ self.key
        t = _PAIRS
        return (
            # the first pair holds the top 4 bits plus 6 low bits again (so ids don't all
            # start alike); decode checks that the copies agree
            f"{self.prefix}{t[((p & 63) << 4) | (p >> 60)]}{t[(p >> 50) & 1023]}{t[(p >> 40) & 1023]}"
            f"{t[(p >> 30) & 1023]}{t[(p >> 20) & 1023]}{t[(p >> 10) & 1023]}{t[p & 1023]}"
            f"{self.tag}"
        )

    def decode(self, token: str) -> int | None:
        body = token[len(self.prefix):] if token.startswith(self.prefix) else None
        if body is None or len(body) != 24 or body[14:] != self.tag:
            return None
        first = _PAIR_INDEX.get(body[:2])
        if first is None:
            return None
        p = first & 15
        for k in range(2, 14, 2):
            v = _PAIR_INDEX.get(body[k:k + 2])
            if v is None:
                return None
            p = (p << 10) | v
        if first >> 4 != p & 63:
            return None
        return ((p ^ self.key) * _MUL_INV) & M64
