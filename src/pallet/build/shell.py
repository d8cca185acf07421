"""Dockerfile word processing: quote removal and variable substitution as Docker's shell lexer does.

This is the behaviour of moby/buildkit `frontend/dockerfile/shell/lex.go` (the classic builder
uses the same package), not of a POSIX shell: there is no command substitution, no globbing and
no field splitting of expanded values.

- Unquoted: the escape character (`\\`, or the `# escape=` one) makes the next character literal
  and is removed; a trailing escape is dropped.
- 'single quotes': everything literal up to the closing quote.
- "double quotes": `$` expands; the escape character escapes only `"`, `$` and itself, and is
  kept before anything else.
- `$name`, `${name}`, `${name:-word}` (unset or empty -> word), `${name-word}` (unset -> word),
  `${name:+word}` (set and non-empty -> word), `${name+word}` (set -> word), `${name:?msg}` and
  `${name?msg}` (an error naming msg). `word` is itself processed. A `$` not followed by a name
  or `{` is literal.

`process_word` returns one string; `process_words` splits on unquoted whitespace first (Docker's
ProcessWords, used for the words of EXPOSE, VOLUME and the like).
"""

from __future__ import annotations

from collections.abc import Mapping

from pallet.errors import InvalidArgument

_NAME_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME = _NAME_START | set("0123456789")


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def words(self, split: bool, stop: str = "") -> list[str]:
        """Process up to the end (or an unquoted `stop` character, left unread)."""
        words: list[str] = []
        cur: list[str] = []
        started = False
        while self.i < len(self.s):
            ch = self.peek()
            if stop and ch in stop:
                break
            if split and ch in " \t\r\n":
                self.i += 1
                if started:
                    words.append("".join(cur))
                    cur, started = [], False
                continue
            started = True
            self.i += 1
            if ch == self.esc:
                nxt = self.next()
                cur.append(nxt)
            elif ch == "'":
                cur.append(self._single())
            elif ch == '"':
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)
        if started or not split:
            words.append("".join(cur))
        return words

    def _single(self) -> str:
        end = self.s.find("'", self.i)
        if end < 0:
            raise InvalidArgument(f"unexpected end of statement while looking for matching single-quote "
                                  f"in {self.s!r}")
        out = self.s[self.i:end]
        self.i = end + 1
        return out

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise InvalidArgument(f"unexpected end of statement while looking for matching "
                                      f"double-quote in {self.s!r}")
            ch = self.next()
            if ch == '"':
                return "".join(out)
            if ch == self.esc:
                nxt = self.peek()
                if nxt in ('"', "$", self.esc):
                    out.append(self.next())
                elif nxt == "":
                    continue
                else:
                    out.append(ch)
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.i
        while self.peek() and self.peek() in _NAME:
            self.i += 1
        return self.s[start:self.i]

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.i += 1
            return self._braced()
        if ch and ch in _NAME_START:
            name = self._name()
            return self.env.get(name, "")
        return "$"

    def _braced(self) -> str:
        name = self._name()
        if not name:
            raise InvalidArgument(f"bad substitution in {self.s!r}: a variable name must follow '${{'")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise InvalidArgument(f"unsupported modifier ({ch or 'end of input'}) in substitution "
                                  f"of {name!r} in {self.s!r}")
        word = "".join(self.words(False, stop="}"))
        if self.next() != "}":
            raise InvalidArgument(f"missing '}}' in substitution of {name!r} in {self.s!r}")
        is_set = name in self.env
        value = self.env.get(name, "")
        present = bool(value) if colon else is_set
        if ch == "-":
            return value if present else word
        if ch == "+":
            return word if present else ""
        if not present:
            raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
        return value


def process_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """`text` with quotes removed and variables expanded from `env`."""
    return _Lexer(text, env, escape).words(False)[0]


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """`text` split on unquoted white space, each word processed as by `process_word`."""
    return _Lexer(text, env, escape).words(True)


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted white space keeping quotes and escapes as written (the raw words of
    `ENV a="b c" d=e`, processed one by one later)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch == escape and i + 1 < len(text):
            cur += [ch, text[i + 1]]
            i += 1
        elif ch in ("'", '"'):
            quote = ch
            cur.append(ch)
        elif ch in " \t\r\n":
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if quote:
        raise InvalidArgument(f"unmatched {quote} quote in {text!r}")
    if cur:
        words.append("".join(cur))
    return words


__all__ = ["process_word", "process_words", "split_words"]
