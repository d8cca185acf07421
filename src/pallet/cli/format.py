"""Rendering helpers shared by the CLI verbs: Docker's human sizes and ages, tab-aligned tables,
and `--format` handling (`table ...`, `json`, or a Go-template subset, see cli.main).

Standard library only, like the rest of the CLI path (no pallet.image: it would pull in the
store's dependencies).
"""

from __future__ import annotations

import time

# collections.abc re-exports these from _collections_abc, which the interpreter has loaded at
# start-up; importing `collections` itself costs ~1 ms of `pallet ps`.
from _collections_abc import Mapping

from pallet import jsonio
from pallet.units import human_duration, human_size

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

NONE = "<none>"


def since(unix: int, now: float | None = None) -> str:
    """`2 minutes ago`, or N/A for an unknown time."""
    if unix <= 0:
        return "N/A"
    return f"{human_duration((time.time() if now is None else now) - unix)} ago"


def created_at(unix: int) -> str:
    """The docker CLI's CreatedAt: `2024-05-07 20:33:45 +0000 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(unix))


def short_id(image_id: str) -> str:
    """Docker's 12-hex-digit form of an id (`sha256:` dropped)."""
    return image_id.partition(":")[2][:12] if image_id.startswith("sha256:") else image_id[:12]


def split_reference(ref: str) -> tuple[str, str]:
    """(repository, tag) of a familiar `name:tag` or `name@digest` from the daemon."""
    name = ref.split("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, NONE


def align(rows: Iterable[Sequence[str]], pad: int = 3, minwidth: int = 0) -> str:
    """Left-aligned columns `pad` spaces apart, the last column unpadded (the docker CLI's
    tabwriter settings: `docker ps` uses minwidth 10 (cells padded to 10 at least); images and
    history use plain padding)."""
    rows = [list(r) for r in rows]
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(ncols)]
    out = []
    for r in rows:
        cells = [c.ljust(max(widths[i] + pad, minwidth)) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip())
    return "\n".join(out) + "\n"


# The template scanners below are hand-written so that `--format` does not import `re` (~6 ms
# of start-up: it loads enum and functools). Each one is the regular expression named in its
# docstring, step for step (tests/unit/cli/test_cli_template_scan.py compares them on random
# text): `\s` is str.isspace(), `\w` str.isalnum() or "_", as in `re` for str patterns.

def _field_headers(template: str, headers: Mapping[str, str]) -> str:
    r"""re.sub(r"\{\{\s*\.(\w+)\s*\}\}", header of group 1, template): each `{{.Field}}` as its
    column header (the field's name in capitals when it has no header)."""
    out: list[str] = []
    i, n = 0, len(template)
    while (start := template.find("{{", i)) >= 0:
        j = start + 2
        while j < n and template[j].isspace():
            j += 1
        if j < n and template[j] == ".":
            k = j + 1
            while k < n and (template[k].isalnum() or template[k] == "_"):
                k += 1
            end = k
            while end < n and template[end].isspace():
                end += 1
            if k > j + 1 and template.startswith("}}", end):
                name = template[j + 1:k]
                out += [template[i:start], headers.get(name, name.upper())]
                i = end + 2
                continue
        out.append(template[i:start + 1])  # no match here: the next try is one character on
        i = start + 1
    out.append(template[i:])
    return "".join(out)


def render(fmt: str | None, default_fields: Sequence[str], headers: Mapping[str, str],
           rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as the docker CLI prints them for `--format`: None or "table" is the default table
    of `default_fields`; "table TEMPLATE" a table with a header made from the fields the
    template names; "json" one JSON object per line; anything else a template per row."""
    from pallet.cli.main import render_template

    if fmt is None or fmt.strip() == "table":
        return align([[headers[f] for f in default_fields],
                      *([str(r[f]) for f in default_fields] for r in rows)])
    if fmt.strip() == "json":
        return "".join(jsonio.dumps(dict(r), sort_keys=True) + "\n" for r in rows)
    if fmt.startswith("table"):
        template = fmt[len("table"):].strip()
        header = _field_headers(template, headers)
        lines = [render_template(header, {})] + [render_template(template, r) for r in rows]
        return align(line.split("\t") for line in lines)
    return "".join(render_template(fmt, r) + "\n" for r in rows)


__all__ = ["NONE", "align", "created_at", "execute_template", "human_duration", "human_size", "render",
           "short_id", "since", "split_reference"]


# -- Go templates --------------------------------------------------------------------------------
# The subset of Go's text/template the docker CLI's --format users write, over JSON data: text,
# `{{.A.B}}` paths, variables (`$`, `$v`), pipelines (`.A | json`), `range` (with `$k, $v :=`),
# `if`/`else`/`with`, and the functions below (docker's cli/templates adds json, join, split,
# lower, upper, title, truncate, pad, println to Go's builtins index, len, printf, eq, ne, not).
# `{{-`/`-}}` trim whitespace as in Go.

def _actions(template: str) -> Iterator[tuple[int, int, bool, str, bool]]:
    r"""re.finditer(r"\{\{(-\s)?(.*?)(\s-)?\}\}", template, re.S) as (start, end, trim before,
    action, trim after): `{{- ` and ` -}}` trim the text around an action, as in Go."""
    i = 0
    while (start := template.find("{{", i)) >= 0:
        body = start + 2
        trim_left = template[body:body + 1] == "-" and template[body + 1:body + 2].isspace()
        if trim_left:
            body += 2
        close = template.find("}}", body)
        if close < 0:
            return  # no later "{{" has a "}}" after it either
        # The lazy (.*?) stops at the first "}}", or two characters before it at " -}}".
        trim_right = close - 2 >= body and template[close - 2].isspace() and template[close - 1] == "-"
        yield start, close + 2, trim_left, template[body:close - 2 if trim_right else close], trim_right
        i = close + 2


_SPECIAL = "()|,"


def _words(text: str) -> list[str]:
    r"""re.findall(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||:=|,|[^\s()|,]+', text): the words of
    a pipeline, quoted strings whole (a backslash escapes any character but a newline)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\":
                    if j + 1 >= n or text[j + 1] == "\n":
                        j = n  # `\\.` cannot match: no quoted string here
                        break
                    j += 1
                j += 1
            if j < n:
                out.append(text[i:j + 1])
                i = j + 1
                continue
        elif c == "`":
            j = text.find("`", i + 1)
            if j >= 0:
                out.append(text[i:j + 1])
                i = j + 1
                continue
        elif c in _SPECIAL:
            out.append(c)
            i += 1
            continue
        elif text.startswith(":=", i):
            out.append(":=")
            i += 2
            continue
        if c.isspace():
            i += 1
            continue
        j = i + 1
        while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        out.append(text[i:j])
        i = j
    return out


class _Node:
    def __init__(self, kind: str, arg: str = "", body: list[Any] | None = None) -> None:
        self.kind, self.arg = kind, arg
        self.body: list[Any] = body or []
        self.alt: list[Any] = []


def _parse(template: str) -> list[Any]:
    root: list[Any] = []
    stack: list[tuple[_Node | None, list[Any]]] = [(None, root)]
    pos = 0
    pending_trim = False
    for start, end, trim_left, action, trim_right in _actions(template):
        text = template[pos:start]
        if pending_trim:
            text = text.lstrip()
        if trim_left:
            text = text.rstrip()
        if text:
            stack[-1][1].append(text)
        pos, pending_trim = end, trim_right
        action = action.strip()
        if action.startswith("/*"):
            continue
        word, _, rest = action.partition(" ")
        if word in ("range", "if", "with"):
            node = _Node(word, rest.strip())
            stack[-1][1].append(node)
            stack.append((node, node.body))
        elif word == "else":
            node_open = stack[-1][0]
            if node_open is None:
                raise ValueError("template: unexpected {{else}}")
            stack[-1] = (node_open, node_open.alt)
        elif word == "end":
            if len(stack) == 1:
                raise ValueError("template: unexpected {{end}}")
            stack.pop()
        else:
            stack[-1][1].append(_Node("expr", action))
    if len(stack) != 1:
        raise ValueError("template: unexpected EOF (missing {{end}})")
    text = template[pos:]
    if text:
        root.append(text.lstrip() if pending_trim else text)
    return root


def _field(value: Any, part: str, path: str) -> Any:
    if isinstance(value, Mapping) and part in value:
        return value[part]
    raise ValueError(f"template: can't evaluate field {part} in {path}")


def _truthy(value: Any) -> bool:
    return bool(value) and value != 0


def _go_str(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_str(v) for v in value) + "]"
    return str(value)


def _printf(fmt: str, *args: Any) -> str:
    out, i = [], 0
    it = iter(args)
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
            else:
                v = next(it, None)
                out.append(repr(v) if verb == "q" and isinstance(v, str) else _go_str(v))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _index(item: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(item, Mapping):
            item = item.get(k)
        elif isinstance(item, list | tuple) and isinstance(k, int):
            if not 0 <= k < len(item):
                raise ValueError(f"template: error calling index: index out of range: {k}")
            item = item[k]
        else:
            raise ValueError(f"template: error calling index: can't index item of type {type(item).__name__}")
    return item


def _json(v: Any) -> str:
    return jsonio.dumps(v, separators=(",", ":"))


_FUNCS: dict[str, Any] = {
    "json": _json,
    "index": _index,
    "len": lambda v: len(v) if v is not None else 0,
    "join": lambda v, sep: sep.join(_go_str(x) for x in v or []),
    "split": lambda s, sep: s.split(sep),
    "upper": lambda s: _go_str(s).upper(),
    "lower": lambda s: _go_str(s).lower(),
    "title": lambda s: _go_str(s).title(),
    "truncate": lambda s, n: _go_str(s)[:n],
    "pad": lambda s, left, right: " " * left + _go_str(s) + " " * right,
    "println": lambda *a: " ".join(_go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(_go_str(x) for x in a),
    "printf": _printf,
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truthy(a),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
}


class _Eval:
    def __init__(self, root: Any) -> None:
        self.vars: dict[str, Any] = {"$": root}

    def operand(self, word: str, dot: Any) -> Any:
        if word.startswith('"'):
            return jsonio.loads(word)
        if word.startswith("`"):
            return word[1:-1]
        if word == ".":
            return dot
        if word.startswith("."):
            value = dot
            for part in word[1:].split("."):
                value = _field(value, part, word)
            return value
        if word.startswith("$"):
            name, _, path = word.partition(".")
            if name not in self.vars:
                raise ValueError(f"template: undefined variable: {name}")
            value = self.vars[name]
            for part in path.split(".") if path else []:
                value = _field(value, part, word)
            return value
        if word in ("true", "false"):
            return word == "true"
        if word == "nil":
            return None
        try:
            return int(word)
        except ValueError:
            pass
        try:
            return float(word)
        except ValueError:
            pass
        raise ValueError(f'template: function "{word}" not defined')

    def command(self, words: list[str], dot: Any, piped: tuple[Any, ...] = ()) -> Any:
        if not words:
            raise ValueError("template: empty command")
        head = words[0]
        if head in _FUNCS:
            args = [self.operand(w, dot) for w in words[1:]] + list(piped)
            try:
                return _FUNCS[head](*args)
            except TypeError as exc:
                raise ValueError(f"template: wrong number of args for {head}: {exc}") from exc
        if (len(words) > 1 or piped) and head[:1] not in ('"', "`", ".", "$"):
            raise ValueError(f'template: function "{head}" not defined')
        if len(words) > 1 or piped:
            raise ValueError(f"template: can't give argument to non-function {head}")
        return self.operand(head, dot)

    def pipeline(self, text: str, dot: Any) -> Any:
        words = _words(text)
        if "(" in words or ")" in words:
            raise ValueError(f"template: parenthesized pipelines are not supported: {text}")
        value: tuple[Any, ...] = ()
        cmd: list[str] = []
        for w in [*words, "|"]:
            if w == "|":
                value = (self.command(cmd, dot, value),)
                cmd = []
            else:
                cmd.append(w)
        return value[0]

    def run(self, nodes: list[Any], dot: Any, out: list[str]) -> None:
        for n in nodes:
            if isinstance(n, str):
                out.append(n)
            elif n.kind == "expr":
                if ":=" in n.arg:
                    name, _, expr = n.arg.partition(":=")
                    self.vars[name.strip()] = self.pipeline(expr, dot)
                else:
                    out.append(_go_str(self.pipeline(n.arg, dot)))
            elif n.kind in ("if", "with"):
                value = self.pipeline(n.arg, dot)
                if _truthy(value):
                    self.run(n.body, value if n.kind == "with" else dot, out)
                else:
                    self.run(n.alt, dot, out)
            elif n.kind == "range":
                self._range(n, dot, out)

    def _range(self, n: _Node, dot: Any, out: list[str]) -> None:
        names: list[str] = []
        expr = n.arg
        if ":=" in expr:
            decl, _, expr = expr.partition(":=")
            names = [v.strip() for v in decl.split(",")]
        value = self.pipeline(expr, dot)
        if isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif value is None:
            items = []
        else:
            raise ValueError(f"template: range can't iterate over {_go_str(value)}")
        if not items:
            self.run(n.alt, dot, out)
        for k, v in items:
            if len(names) == 1:
                self.vars[names[0]] = v
            elif len(names) == 2:
                self.vars[names[0]], self.vars[names[1]] = k, v
            self.run(n.body, v, out)


def execute_template(template: str, data: Any) -> str:
    """Render a Go-template subset over JSON `data`; ValueError with Go's wording otherwise.
    As the docker CLI does, `\\n` and `\\t` typed in the format become newline and tab."""
    text = template.replace("\\n", "\n").replace("\\t", "\t")
    out: list[str] = []
    _Eval(data).run(_parse(text), data, out)
    return "".join(out)


def inspect_many(client: Any, paths: Sequence[str], fmt: str | None) -> int:
    """`X inspect`: GET each path, print the objects as a JSON array or through `fmt` (a Go
    template), then one "Error: ..." line per failure; 1 if any failed, as the docker CLI does."""
    import sys

    from pallet.errors import InvalidArgument, PalletError

    found: list[Any] = []
    errors: list[str] = []
    for path in paths:
        try:
            found.append(client.get_json(path))
        except PalletError as exc:
            errors.append(str(exc))
    if fmt and fmt != "json":
        from pallet.cli.main import render_template

        try:
            sys.stdout.write("".join(render_template(fmt, obj) + "\n" for obj in found))
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
    else:
        sys.stdout.write(jsonio.dumps(found, indent=4) + "\n")
    for e in errors:
        print(f"Error: {e}", file=sys.stderr)
    return 1 if errors else 0


def confirm(warning: str) -> bool:
    """The docker CLI's prune prompt: the warning, then `[y/N]` read from stdin."""
    import sys

    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def key_value_pairs(values: Iterable[str], what: str) -> dict[str, str]:
    """`--label`/`--opt` values, KEY or KEY=VALUE, as a dict (volume and network create)."""
    from pallet.errors import InvalidArgument

    out = {}
    for v in values:
        key, _, value = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {v!r}: want KEY[=VALUE]")
        out[key] = value
    return out
