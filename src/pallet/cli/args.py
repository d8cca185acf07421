"""A command-line parser that reads the common cases itself and leaves everything else to argparse.

Importing argparse costs ~9 ms of every `pallet` command (it loads re, enum, gettext and
locale), a tenth of a whole `pallet run --rm busybox true`. A verb builds a `Parser` with the
same calls it would make on `argparse.ArgumentParser` (the constructor's keywords and
`add_argument`); the parser records them. `parse_args` first tries the fast path below, which
understands exactly argparse's behaviour on the command lines people type: short and long
options, `--opt=value`, `-e X` and `-eX`, bundled short flags (`-it`, `-ite X`), repeated and
appended options, `int` values, choices, positionals (each one argument, then at most one of
`?`, `*`, `+` or REMAINDER: the image and the command after it). Whatever it is not sure about
(an abbreviated long option, `--`, a value that looks like an option, a missing or extra
argument, `--help`, any error) raises `_Fallback` inside, and the recorded calls are replayed on
a real argparse parser, which parses the same argv: help, errors and their messages, exit
status 2 are argparse's own. tests/unit/cli/test_cli_args.py runs both over a large set of
argv lists and asserts identical namespaces.

The rules followed are CPython 3.11's argparse (Lib/argparse.py: `_parse_optional` classifies
each argument as an option "O" or an argument "A" before parsing; `consume_optional` splits
bundles; `consume_positionals` matches the positionals in one go).

Any other use of the parser (`add_subparsers`, `set_defaults`, `print_help`, `error`, ...)
builds the argparse parser at once and from then on everything goes to it.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs ~3 ms of start-up; mypy treats this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

REMAINDER = "..."  # argparse.REMAINDER's value, without importing argparse
_ACTIONS = (None, "store", "store_true", "append", "help")
_TYPES = (None, int, str)
_VALUE_NARGS = (None, "?", "*", "+", REMAINDER)
_KEYWORDS = frozenset({"action", "type", "choices", "default", "nargs", "dest", "metavar", "help",
                       "required"})


class _Fallback(Exception):
    """The fast path is not sure: argparse parses this command line."""


class Namespace:
    """The parsed command line, an attribute per destination (argparse.Namespace's behaviour:
    equality by attributes, `vars()`, `in`)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __getattr__(self, name: str) -> Any:  # for mypy: attributes come from the parser
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:  # for mypy, as __getattr__
        self.__dict__[name] = value

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"

    __hash__ = None  # type: ignore[assignment]  # mutable, as argparse.Namespace


class _Action:
    """What the fast path needs of one add_argument call."""

    __slots__ = ("choices", "default", "dest", "flags", "kind", "nargs", "required", "type")

    def __init__(self, flags: tuple[str, ...], kw: dict[str, Any]) -> None:
        self.flags = flags
        action = kw.get("action")
        self.kind = "store" if action is None else action
        self.type = kw.get("type")
        self.choices = kw.get("choices")
        self.nargs = kw.get("nargs")
        self.required = bool(kw.get("required", False))
        self.default = kw.get("default", False if action == "store_true" else None)
        if "dest" in kw:
            self.dest = kw["dest"]
        elif not flags[0].startswith("-"):
            self.dest = flags[0]
        else:  # argparse _get_optional_kwargs: the first long option, else the first short one
            longs = [f for f in flags if f.startswith("--")]
            self.dest = (longs or flags)[0].lstrip("-").replace("-", "_")

    @property
    def takes_value(self) -> bool:
        return self.kind in ("store", "append")

    def convert(self, value: str) -> Any:
        if self.type is not None:
            try:
                value = self.type(value)
            except (TypeError, ValueError):
                raise _Fallback from None  # argparse: "invalid int value: ..."
        if self.choices is not None and value not in self.choices:
            raise _Fallback  # argparse: "invalid choice: ..."
        return value


class Parser:
    """`argparse.ArgumentParser` for the verbs: the same constructor and `add_argument`, a fast
    `parse_args`. Unless `formatter_class` is given, help is laid out by
    pallet.cli.helpformat.HelpFormatter."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self._real: argparse.ArgumentParser | None = None
        self._options: dict[str, _Action] = {}
        self._actions: list[_Action] = []
        self._dests: set[str] = set()
        self._positionals: list[_Action] = []
        # A parser the fast path cannot read (an unusual action, type or nargs) always goes to argparse.
        self._slow = kwargs.get("prefix_chars", "-") != "-" or kwargs.get("allow_abbrev") is False \
            or bool(kwargs.get("fromfile_prefix_chars")) or kwargs.get("exit_on_error") is False
        if kwargs.get("add_help", True):
            self._record(("-h", "--help"), {"action": "help"})

    def add_argument(self, *flags: str, **kw: Any) -> None:
        self._calls.append((flags, kw))
        self._record(flags, kw)
        if self._real is not None:
            self._real.add_argument(*flags, **kw)

    def _record(self, flags: tuple[str, ...], kw: dict[str, Any]) -> None:
        if not flags or kw.get("action") not in _ACTIONS or kw.get("type") not in _TYPES \
                or not _KEYWORDS.issuperset(kw):
            self._slow = True  # and argparse checks the call itself when it replays it
            return
        action = _Action(flags, kw)
        if flags[0].startswith("-"):
            for f in flags:
                # "-1" (or "-.5") as an option changes how argparse reads negative numbers, "-foo"
                # how it reads bundles; a repeated flag is an error of the call
                if (f[1:2] != "-" and (len(f) > 2 or f[1:2] in "0123456789.")) or f in self._options:
                    self._slow = True
            if action.nargs is not None:
                self._slow = True
            self._options.update(dict.fromkeys(flags, action))
        else:
            if action.nargs not in _VALUE_NARGS or action.choices is not None or action.kind != "store" \
                    or (self._positionals and self._positionals[-1].nargs is not None):
                self._slow = True  # only: one-argument positionals, then at most one of ? * + ...
            self._positionals.append(action)
        if action.kind != "help":
            if action.dest in self._dests:
                self._slow = True  # shared destinations: argparse's default handling differs
            self._dests.add(action.dest)
            self._actions.append(action)

    def argparse(self) -> argparse.ArgumentParser:
        """The real parser, built from the recorded calls (once)."""
        if self._real is None:
            import argparse

            kwargs = dict(self._kwargs)
            if "formatter_class" not in kwargs:
                from pallet.cli.helpformat import HelpFormatter

                kwargs["formatter_class"] = HelpFormatter
            real = argparse.ArgumentParser(**kwargs)
            for flags, kw in self._calls:
                real.add_argument(*flags, **kw)
            self._real = real
        return self._real

    def __getattr__(self, name: str) -> Any:
        """Everything else argparse's parser does (set_defaults, add_subparsers, print_help...):
        from then on argparse parses too, as the tables here may no longer say it all."""
        if name.startswith("_"):
            raise AttributeError(name)
        self._slow = True
        return getattr(self.argparse(), name)

    def error(self, message: str) -> NoReturn:
        self.argparse().error(message)

    def parse_args(self, args: list[str] | None = None) -> Namespace:
        argv = sys.argv[1:] if args is None else list(args)
        if not self._slow:
            try:
                return self._parse(argv)
            except _Fallback:
                pass
        return Namespace(**vars(self.argparse().parse_args(argv)))

    # -- the fast path ---------------------------------------------------------------------------

    def _classify(self, arg: str) -> str:
        """argparse's `_parse_optional` as a pattern letter: "O" an option (known or not), "A" an
        argument. Raises _Fallback where argparse errors (an ambiguous abbreviation) or where
        this reading might differ from its regular expression (negative numbers)."""
        if not arg or arg[0] != "-":
            return "A"
        if arg in self._options:
            return "O"
        if len(arg) == 1:
            return "A"
        if "=" in arg and arg.split("=", 1)[0] in self._options:
            return "O"
        matches = len(self._prefix_matches(arg))
        if matches > 1:
            raise _Fallback  # argparse: "ambiguous option"
        if matches == 1:
            return "O"
        if _negative_number(arg):
            return "A"
        body = arg[1:-1] if arg.endswith("\n") else arg[1:]
        if body and all(ch.isdecimal() or ch == "." for ch in body):
            raise _Fallback  # argparse's ^-\d+$|^-\d*\.\d+$ also takes other digits, a final newline
        if " " in arg:
            return "A"
        return "O"

    def _prefix_matches(self, arg: str) -> list[tuple[str, str | None]]:
        """argparse's `_get_option_tuples`: the options `arg` may abbreviate, or (for one dash)
        the short option it starts with, and the explicit argument."""
        if arg[1] == "-":
            prefix, eq, _ = arg.partition("=")
            explicit = arg.split("=", 1)[1] if eq else None
            return [(f, explicit) for f in self._options if f.startswith(prefix)]
        found: list[tuple[str, str | None]] = []
        for f in self._options:
            if f == arg[:2]:
                found.append((f, arg[2:]))
            elif f.startswith(arg):
                found.append((f, None))
        return found

    def _parse(self, argv: list[str]) -> Namespace:
        if "--" in argv:
            raise _Fallback  # argparse strips the first `--` in places hard to follow exactly
        kinds = [self._classify(arg) for arg in argv]
        values: dict[str, Any] = {a.dest: a.default for a in self._actions}
        seen: set[str] = set()
        block: list[str] = []  # the positionals' arguments, one contiguous run
        remainder: list[str] | None = None
        state = "before"  # -> "in" the run of positionals -> "after" it (options only)
        fixed = [a for a in self._positionals if a.nargs is None]
        last = self._positionals[-1] if self._positionals and self._positionals[-1].nargs else None
        i = 0
        while i < len(argv):
            if kinds[i] == "A":
                if state == "after":
                    raise _Fallback  # argparse: "unrecognized arguments" (or a second match)
                if last is not None and last.nargs == REMAINDER:
                    # consume_positionals: the fixed ones take one argument each, the
                    # remainder everything after them, options included.
                    end = i + len(fixed)
                    if end > len(argv) or any(k != "A" for k in kinds[i:end]):
                        raise _Fallback
                    block, remainder = argv[i:end], argv[end:]
                    break
                state = "in"
                block.append(argv[i])
                i += 1
                continue
            if state == "in":
                state = "after"
            i = self._option(argv, kinds, i, values, seen)
        self._positional_values(block, remainder, fixed, last, values)
        for a in self._actions:
            if a.flags[0].startswith("-") and a.dest not in seen:
                if a.required:
                    raise _Fallback  # argparse: "the following arguments are required"
                if isinstance(a.default, str) and a.type is not None:
                    values[a.dest] = _convert_default(a)
        return Namespace(**values)

    def _option(self, argv: list[str], kinds: list[str], i: int, values: dict[str, Any],
                seen: set[str]) -> int:
        """consume_optional: one option argument (a bundle of short flags included) and its
        value; the index after them."""
        arg = argv[i]
        explicit: str | None = None
        if arg in self._options:
            flag = arg
        elif "=" in arg and arg.split("=", 1)[0] in self._options:
            flag, explicit = arg.split("=", 1)
        else:
            matches = self._prefix_matches(arg)
            # an abbreviated long option, or an unknown one: argparse's business
            if arg[1] == "-" or len(matches) != 1 or matches[0][0] != arg[:2]:
                raise _Fallback
            flag, explicit = matches[0]
        action = self._options[flag]
        while True:
            if action.kind == "help":
                raise _Fallback
            if not action.takes_value:
                if explicit is not None and (flag[1] == "-" or explicit == ""):
                    raise _Fallback  # argparse: "ignored explicit argument"
                values[action.dest] = True
                seen.add(action.dest)
                if explicit is None:
                    return i + 1
                flag, explicit = "-" + explicit[0], explicit[1:] or None
                if flag not in self._options:
                    raise _Fallback
                action = self._options[flag]
                continue
            if explicit is not None:
                value, end = explicit, i + 1
            elif i + 1 < len(argv) and kinds[i + 1] == "A":
                value, end = argv[i + 1], i + 2
            else:
                raise _Fallback  # argparse: "expected one argument"
            converted = action.convert(value)
            if action.kind == "append":
                current = values[action.dest]
                values[action.dest] = [*(current if current is not None else []), converted]
            else:
                values[action.dest] = converted
            seen.add(action.dest)
            return end

    def _positional_values(self, block: list[str], remainder: list[str] | None, fixed: list[_Action],
                           last: _Action | None, values: dict[str, Any]) -> None:
        """consume_positionals, for the one run of arguments: each fixed positional one, the
        last one (?, *, + or REMAINDER) what is left."""
        if len(block) < len(fixed):
            raise _Fallback  # argparse: "the following arguments are required"
        for action, arg in zip(fixed, block):
            values[action.dest] = action.convert(arg)
        rest = block[len(fixed):]
        if last is None:
            if rest:
                raise _Fallback  # argparse: "unrecognized arguments"
            return
        if last.nargs == REMAINDER:
            values[last.dest] = [last.convert(a) for a in remainder or []]
        elif last.nargs == "?":
            if len(rest) > 1:
                raise _Fallback
            if rest:
                values[last.dest] = last.convert(rest[0])
            elif isinstance(last.default, str):
                values[last.dest] = last.convert(last.default)
        elif last.nargs == "*" and not rest:
            values[last.dest] = last.default if last.default is not None else []
        else:  # "*" with arguments, "+"
            if not rest:
                raise _Fallback  # argparse: "the following arguments are required"
            values[last.dest] = [last.convert(a) for a in rest]


def _convert_default(action: _Action) -> Any:
    """argparse converts an unused option's string default with its type, without checking
    choices (`_get_value`, not `_check_value`)."""
    assert action.type is not None
    try:
        return action.type(action.default)
    except (TypeError, ValueError):
        raise _Fallback from None


def _negative_number(arg: str) -> bool:
    """argparse's `^-\\d+$|^-\\d*\\.\\d+$`, ASCII digits only (a stricter reading: what it
    leaves out goes to argparse)."""
    if not arg.startswith("-"):
        return False
    whole, dot, frac = arg[1:].partition(".")
    digits = "0123456789"
    if not dot:
        return bool(whole) and all(c in digits for c in whole)
    return bool(frac) and all(c in digits for c in whole) and all(c in digits for c in frac)
