"""Container names: Docker's rule (daemon/names/names.go) and random `adjective_noun` names."""

from __future__ import annotations

import re
import secrets

from pallet.errors import InvalidArgument

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

# A short list in the spirit of Docker's pkg/namesgenerator (which has ~100 x ~240 words).
ADJECTIVES = (
    "admiring", "agile", "amazing", "awesome", "blissful", "bold", "brave", "busy", "calm", "clever",
    "cool", "dazzling", "eager", "ecstatic", "elegant", "epic", "fervent", "focused", "friendly", "gallant",
    "gifted", "happy", "hopeful", "jolly", "keen", "kind", "laughing", "lucid", "modest", "nifty",
    "optimistic", "peaceful", "quirky", "relaxed", "serene", "sharp", "stoic", "tender", "vibrant", "zen",
)
NOUNS = (
    "allen", "babbage", "bardeen", "bell", "booth", "cerf", "curie", "darwin", "dijkstra", "einstein",
    "engelbart", "euclid", "fermat", "franklin", "galileo", "gauss", "hopper", "hypatia", "kalam", "knuth",
    "lamarr", "liskov", "lovelace", "mccarthy", "meitner", "minsky", "morse", "newton", "noether", "pascal",
    "perlman", "ritchie", "shannon", "sinoussi", "thompson", "torvalds", "turing", "wozniak", "yalow", "zuse",
)


def validate_name(name: str) -> str:
    """The name without its optional leading '/'; InvalidArgument when Docker would refuse it."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"Invalid container name ({name!r}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                              "allowed and it needs at least two characters")
    return name.lstrip("/")


def random_name(taken: object = (), attempts: int = 10) -> str:
    """`adjective_noun`, avoiding names in `taken`; a digit is appended after a few collisions,
    as Docker's GetRandomName(retry) does."""
    for i in range(attempts):
        name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NOUNS)}"
        if i >= 3:
            name += str(secrets.randbelow(10))
        if name not in taken:  # type: ignore[operator]
            return name
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NOUNS)}_{secrets.token_hex(3)}"
