"""The Dockerfile parser on real-world syntax: directives, continuations, comments, JSON vs shell
forms, heredocs, flags, ONBUILD, and errors that name line and column."""

from __future__ import annotations

import pytest

from pallet.build.builder import kv_pairs, parse_duration, split_stages
from pallet.build.dockerfile import ParseError, parse, parse_kv_flag
from pallet.errors import InvalidArgument

# A Dockerfile in the style of the official images (python, nginx): continuations with
# comments inside, JSON CMD, multi-stage, ARG before FROM.
OFFICIAL_STYLE = r"""# syntax=docker/dockerfile:1
# escape=\
ARG BASE=busybox
FROM ${BASE}:latest AS build
ENV LANG C.UTF-8
ENV PYTHON_VERSION=3.12.1 \
    PATH=/usr/local/bin:$PATH

RUN set -eux; \
# a comment inside a continuation is dropped
    apk add --no-cache \
        ca-certificates \

        tzdata; \
    echo done
COPY --chown=app:app --chmod=0755 entrypoint.sh /usr/local/bin/
FROM build
EXPOSE 80/tcp 443
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s CMD wget -qO- http://localhost/ || exit 1
CMD ["nginx", "-g", "daemon off;"]
"""


def test_official_style_dockerfile():
    df = parse(OFFICIAL_STYLE)
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "\\"}
    cmds = [i.cmd for i in df.instructions]
    assert cmds == ["ARG", "FROM", "ENV", "ENV", "RUN", "COPY", "FROM", "EXPOSE", "STOPSIGNAL",
                    "HEALTHCHECK", "CMD"]
    run = df.instructions[4]
    assert run.line == 9
    assert run.text == ("set -eux;     apk add --no-cache         ca-certificates         tzdata;"
                        "     echo done")
    assert not run.json
    copy = df.instructions[5]
    assert copy.flags == {"chown": ["app:app"], "chmod": ["0755"]}
    assert copy.text == "entrypoint.sh /usr/local/bin/"
    hc = df.instructions[9]
    assert hc.flags == {"interval": ["30s"], "timeout": ["3s"]}
    cmd = df.instructions[-1]
    assert cmd.json and cmd.args == ["nginx", "-g", "daemon off;"]
    meta, stages = split_stages(df.instructions)
    assert [m.cmd for m in meta] == ["ARG"]
    assert [(s.name, s.base) for s in stages] == [("build", "${BASE}:latest"), ("", "build")]


def test_instruction_words_are_case_insensitive_and_originals_kept():
    df = parse("from busybox as Base\nrun echo hi\ncOpY a b\n")
    assert [i.cmd for i in df.instructions] == ["FROM", "RUN", "COPY"]
    assert df.instructions[1].original == "run echo hi"
    _, stages = split_stages(df.instructions)
    assert stages[0].name == "base"


def test_backtick_escape_directive_windows_style():
    df = parse("# escape=`\nFROM busybox\nRUN echo a `\n    b\nCOPY c:\\dir\\ d\n")
    assert df.escape == "`"
    assert df.instructions[1].text == "echo a     b"
    assert df.instructions[2].text == "c:\\dir\\ d"


def test_directives_only_at_the_top():
    df = parse("FROM busybox\n# escape=`\nRUN echo \\\n x\n")
    assert df.escape == "\\" and df.directives == {}
    assert df.instructions[1].text == "echo  x"
    with pytest.raises(ParseError, match="only one escape"):
        parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(ParseError, match="invalid escape"):
        parse("# escape=x\nFROM x\n")


def test_json_form_and_fallback_to_shell_form():
    df = parse('FROM x\nCMD ["a", "b c"]\nENTRYPOINT [\'a\']\nRUN ["unterminated"\n'
               'SHELL ["/bin/bash", "-c"]\n')
    cmd, ep, run, shell = df.instructions[1:]
    assert cmd.json and cmd.args == ["a", "b c"]
    assert not ep.json and ep.text == "['a']"       # single quotes are not JSON: shell form
    assert not run.json and run.text == '["unterminated"'
    assert shell.json and shell.args == ["/bin/bash", "-c"]


def test_heredocs_several_in_one_instruction():
    text = (
        "FROM busybox\n"
        "RUN <<EOF\n"
        "echo one\n"
        "echo two\n"
        "EOF\n"
        "COPY <<a.txt <<\"b.txt\" /dest/\n"
        "alpha $HOME\n"
        "a.txt\n"
        "beta $HOME\n"
        "b.txt\n"
        "RUN <<-'END' cat > /x\n"
        "\t\tindented\n"
        "\tEND\n"
        "CMD true\n"
    )
    df = parse(text)
    run1, copy, run2, cmd = df.instructions[1:]
    assert run1.heredocs[0].name == "EOF"
    assert run1.heredocs[0].content == "echo one\necho two\n"
    assert run1.end_line == 5
    assert [(h.name, h.content, h.expand) for h in copy.heredocs] == [
        ("a.txt", "alpha $HOME\n", True), ("b.txt", "beta $HOME\n", False)]
    assert run2.heredocs[0].strip_tabs and run2.heredocs[0].content == "indented\n"
    assert not run2.heredocs[0].expand
    assert cmd.line == 14


def test_here_string_is_not_a_heredoc():
    df = parse("FROM x\nRUN cat <<<word\n")
    assert df.instructions[1].heredocs == ()


def test_unterminated_heredoc_names_its_line():
    with pytest.raises(ParseError) as info:
        parse("FROM x\nRUN <<EOF\necho\n")
    assert info.value.line == 2 and "unterminated heredoc" in str(info.value)


@pytest.mark.parametrize(("text", "line", "col", "words"), [
    ("FROM x\nFOO bar\n", 2, 1, "unknown instruction: FOO"),
    ("FROM x\n\n   BOGUS x\n", 3, 4, "unknown instruction: BOGUS"),
    ("FROM x\nCOPY --frm=a b c\n", 2, 6, "unknown flag: --frm"),
    ("FROM x\nRUN --mount=type=cache,target=/x --nope=1 true\n", 2, 34, "unknown flag: --nope"),
    ("FROM --platform linux/amd64 x\n", 1, 6, "needs a value"),
    ("FROM x\nCOPY --link --link a b\n", 2, 13, "given twice"),
    ("FROM x\nENV\n", 2, 1, "ENV requires at least one argument"),
    ("FROM x\nONBUILD FROM y\n", 2, 8, "isn't allowed as an ONBUILD trigger"),
    ("FROM x\nONBUILD BLAH y\n", 2, 8, "unknown instruction: BLAH"),
])
def test_errors_name_line_and_column(text, line, col, words):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.col) == (line, col), str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"Dockerfile:{line}:{col}:")


def test_boolean_and_repeatable_flags():
    df = parse("FROM x\nCOPY --link --from=0 a b\n"
               "RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/t --network=none true\n")
    copy, run = df.instructions[1:]
    assert copy.flags == {"link": ["true"], "from": ["0"]}
    assert run.flags["mount"] == ["type=cache,target=/a", "type=tmpfs,target=/t"]
    assert run.flag("network") == "none"
    assert parse_kv_flag(run.flags["mount"][0]) == {"type": "cache", "target": "/a"}
    assert parse_kv_flag("type=bind,ro") == {"type": "bind", "ro": "true"}


def test_bom_crlf_and_trailing_whitespace_after_escape():
    df = parse("\ufeffFROM x\r\nRUN echo a \\  \r\n  b\r\n")
    assert df.instructions[1].text == "echo a   b"


def test_stage_errors():
    with pytest.raises(ParseError, match="only ARG may come before"):
        split_stages(parse("ENV a=b\nFROM x\n").instructions)
    with pytest.raises(ParseError, match="duplicate name"):
        split_stages(parse("FROM x AS a\nFROM y AS a\n").instructions)
    with pytest.raises(ParseError, match="one or three arguments"):
        split_stages(parse("FROM x y\n").instructions)
    with pytest.raises(ParseError, match="invalid name for build stage"):
        split_stages(parse("FROM x AS 1abc\n").instructions)


def test_env_label_pairs_new_and_legacy_forms():
    env = {"A": "1"}
    assert kv_pairs('X=$A Y="two words" Z=a\\ b', env, "\\", "ENV") == [("X", "1"), ("Y", "two words"),
                                                                       ("Z", "a b")]
    assert kv_pairs("LANG C.UTF-8 and more", env, "\\", "ENV") == [("LANG", "C.UTF-8 and more")]
    assert kv_pairs('"com.example.vendor"="ACME Inc"', env, "\\", "LABEL") == [("com.example.vendor",
                                                                                 "ACME Inc")]


def test_go_durations():
    assert parse_duration("30s", "x") == 30 * 10**9
    assert parse_duration("1m30s", "x") == 90 * 10**9
    assert parse_duration("500ms", "x") == 5 * 10**8
    with pytest.raises(InvalidArgument, match="invalid duration"):
        parse_duration("30", "x")
