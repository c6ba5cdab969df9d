"""The Dockerfile parser and the word lexer, against Docker's behaviour.

The lexer table restates cases in the style of BuildKit's `envVarTest`
(`frontend/dockerfile/shell`), with the same environment: PWD=/home,
SHELL=bash, KOREAN=한국어 and NULL set but empty.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.images.build.dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    expand_word,
    expand_words,
    parse,
    parse_arg,
    parse_duration,
    parse_key_values,
)

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def only(text: str) -> Instruction:
    """The one instruction after `FROM scratch`."""
    df = parse("FROM scratch\n" + text)
    (inst,) = df.stages[0].instructions
    return inst


def error_of(text: str, filename: str = "Dockerfile") -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse(text, filename)
    return info.value


# --- errors ---------------------------------------------------------------------


def test_error_string_names_file_and_line() -> None:
    e = DockerfileError("boom", filename="x/Dockerfile", line=7)
    assert str(e) == "x/Dockerfile:7: boom"
    assert (e.filename, e.line, e.message) == ("x/Dockerfile", 7, "boom")
    assert isinstance(e, ValueError)


def test_error_string_without_line() -> None:
    assert str(DockerfileError("boom")) == "Dockerfile: boom"


def test_errors_use_the_filename() -> None:
    e = error_of("FROM a\nBAD x\n", filename="app.Dockerfile")
    assert str(e) == "app.Dockerfile:2: unknown instruction: BAD"


# --- lines, comments, continuations --------------------------------------------


def test_single_stage() -> None:
    df = parse('FROM alpine:3.19\nRUN apk add curl\nCMD ["sh"]\n')
    assert isinstance(df, Dockerfile)
    assert df.filename == "Dockerfile"
    assert df.escape == "\\"
    assert df.global_args == ()
    (stage,) = df.stages
    assert (stage.index, stage.name, stage.base, stage.platform, stage.line) == (
        0,
        None,
        "alpine:3.19",
        None,
        1,
    )
    run, cmd = stage.instructions
    assert run == Instruction("RUN", (), ("apk add curl",), False, 2, "RUN apk add curl")
    assert cmd == Instruction("CMD", (), ("sh",), True, 3, 'CMD ["sh"]')


def test_keywords_are_case_insensitive() -> None:
    df = parse("from alpine\nRuN echo hi\nworkdir /app\n")
    assert [i.keyword for i in df.stages[0].instructions] == ["RUN", "WORKDIR"]
    assert df.stages[0].instructions[0].source == "RuN echo hi"


def test_every_known_keyword_parses() -> None:
    lines = [
        "RUN true",
        "CMD true",
        "LABEL a=b",
        "MAINTAINER me",
        "EXPOSE 80/tcp",
        "ENV A=1",
        "ADD a /b",
        "COPY a /b",
        "ENTRYPOINT sh",
        "VOLUME /data",
        "USER 1000:1000",
        "WORKDIR /w",
        "ARG X",
        "ONBUILD RUN true",
        "STOPSIGNAL SIGTERM",
        "HEALTHCHECK NONE",
        'SHELL ["/bin/sh", "-c"]',
    ]
    df = parse("FROM a\n" + "\n".join(lines))
    assert [i.keyword for i in df.stages[0].instructions] == [w.split()[0] for w in lines]


def test_unknown_instruction_names_it_and_its_line() -> None:
    e = error_of("FROM a\n\nfoo bar\n")
    assert e.line == 3
    assert "unknown instruction: FOO" in str(e)
    assert str(e).startswith("Dockerfile:3:")


def test_comments_and_blank_lines_are_skipped() -> None:
    df = parse("# a comment\n\n   # indented comment\nFROM a\n\n# x\nRUN b\n")
    (inst,) = df.stages[0].instructions
    assert (inst.line, inst.args) == (7, ("b",))
    assert df.stages[0].line == 4


def test_hash_inside_an_instruction_is_not_a_comment() -> None:
    assert only("RUN echo # not a comment").args == ("echo # not a comment",)


def test_continuation_joins_lines_and_keeps_the_start_line() -> None:
    df = parse("FROM a\nRUN apk add x \\\n && y\nUSER me\n")
    run, user = df.stages[0].instructions
    assert run.args == ("apk add x  && y",)
    assert run.source == "RUN apk add x  && y"
    assert run.line == 2
    assert user.line == 4


def test_continuation_allows_trailing_blanks_after_the_escape() -> None:
    assert only("RUN a \\  \t\n b").args == ("a  b",)


def test_comment_and_blank_lines_inside_a_continuation_are_dropped() -> None:
    text = "RUN a \\\n# comment\n    # indented comment\n\n   \\\n b"
    inst = only(text)
    assert inst.args == ("a     b",)
    assert "#" not in inst.source


def test_continuation_lines_keep_their_leading_blanks() -> None:
    assert only("RUN a\\\n   b").args == ("a   b",)


def test_continuation_at_end_of_file() -> None:
    assert only("RUN a \\").args == ("a",)


def test_line_numbers_after_a_continuation() -> None:
    df = parse("FROM a\nRUN a \\\n b \\\n c\n\nRUN d\n")
    assert [i.line for i in df.stages[0].instructions] == [2, 6]


def test_crlf_and_bom() -> None:
    df = parse("\ufeffFROM a\r\nRUN b \\\r\n c\r\n")
    assert df.stages[0].base == "a"
    assert df.stages[0].instructions[0].args == ("b  c",)


def test_leading_whitespace_before_an_instruction() -> None:
    assert only("    RUN x").args == ("x",)


# --- parser directives --------------------------------------------------------


def test_escape_directive_backtick_windows_style() -> None:
    text = "# escape=`\nFROM windows\nCOPY C:\\src\\ C:\\dst\\\nRUN dir `\n    C:\\dst\n"
    df = parse(text)
    assert df.escape == "`"
    copy, run = df.stages[0].instructions
    assert copy.args == ("C:\\src\\ C:\\dst\\",)
    assert run.args == ("dir     C:\\dst",)
    assert run.line == 4


def test_escape_directive_backslash() -> None:
    assert parse("# escape=\\\nFROM a\n").escape == "\\"


def test_directive_spacing_and_key_case() -> None:
    assert parse("#   ESCAPE   =   `   \nFROM a\n").escape == "`"


def test_syntax_directive_is_ignored_and_escape_may_follow() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n")
    assert df.escape == "`"


def test_directive_after_a_comment_is_a_comment() -> None:
    assert parse("# hello\n# escape=`\nFROM a\n").escape == "\\"


def test_directive_after_a_blank_line_is_a_comment() -> None:
    assert parse("\n# escape=`\nFROM a\n").escape == "\\"


def test_directive_after_an_instruction_is_a_comment() -> None:
    assert parse("FROM a\n# escape=`\nRUN x \\\n y\n").escape == "\\"


def test_unknown_directive_ends_the_directives() -> None:
    assert parse("# foo=bar\n# escape=`\nFROM a\n").escape == "\\"


def test_invalid_escape_value() -> None:
    e = error_of("# escape=x\nFROM a\n")
    assert e.line == 1
    assert "'x'" in str(e)
    assert "escape" in str(e)


def test_repeated_directive() -> None:
    e = error_of("# escape=`\n# escape=\\\nFROM a\n")
    assert e.line == 2
    assert "only one escape parser directive" in str(e)


def test_backslash_is_plain_text_under_backtick() -> None:
    df = parse("# escape=`\nFROM a\nRUN echo \\\nRUN b\n")
    assert [i.args for i in df.stages[0].instructions] == [("echo \\",), ("b",)]


# --- flags ----------------------------------------------------------------------


def test_flags_with_values_quotes_and_bare() -> None:
    inst = only('COPY --from=build --chown="1:1" --link src /dst')
    assert inst.flags == (("from", "build"), ("chown", "1:1"), ("link", None))
    assert inst.args == ("src /dst",)
    assert inst.flag("from") == "build"
    assert inst.flag("chown") == "1:1"
    assert inst.flag("link") is None
    assert inst.flag("missing") is None


def test_last_flag_wins() -> None:
    inst = only("COPY --from=a --from=b x y")
    assert inst.flag("from") == "b"
    assert inst.flags == (("from", "a"), ("from", "b"))


def test_flag_value_keeps_equals_and_commas() -> None:
    inst = only("RUN --mount=type=cache,target=/root/.cache pip install x")
    assert inst.flag("mount") == "type=cache,target=/root/.cache"
    assert inst.args == ("pip install x",)


def test_flags_only_before_the_first_other_word() -> None:
    inst = only("RUN echo --not-a-flag")
    assert inst.flags == ()
    assert inst.args == ("echo --not-a-flag",)


def test_double_dash_ends_the_flags() -> None:
    inst = only("RUN --network=none -- --weird")
    assert inst.flags == (("network", "none"),)
    assert inst.args == ("--weird",)


def test_flags_before_json_form() -> None:
    inst = only('RUN --network=none ["echo", "hi"]')
    assert inst.flags == (("network", "none"),)
    assert (inst.args, inst.json_form) == (("echo", "hi"), True)


def test_only_flags_means_no_arguments() -> None:
    e = error_of("FROM a\nCOPY --from=x\n")
    assert e.line == 2
    assert "COPY requires at least one argument" in str(e)


def test_empty_flag_name() -> None:
    e = error_of("FROM a\nRUN --=x y\n")
    assert e.line == 2
    assert "invalid flag" in str(e)


# --- JSON form and shell form --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "args", "json_form"),
    [
        ('RUN ["a", "b c"]', ("a", "b c"), True),
        ('RUN   [ "a" ]  ', ("a",), True),
        ('CMD ["\\u0041", "x\\"y"]', ("A", 'x"y'), True),
        ("CMD []", (), True),
        ("ENTRYPOINT []", (), True),
        ('SHELL ["powershell", "-Command"]', ("powershell", "-Command"), True),
        ('COPY ["a b", "/d/"]', ("a b", "/d/"), True),
        ('ADD ["http://x/y", "/z"]', ("http://x/y", "/z"), True),
        ('VOLUME ["/a", "/b"]', ("/a", "/b"), True),
        ("VOLUME /a /b", ("/a /b",), False),
        ("RUN [ -f x ]", ("[ -f x ]",), False),
        ('RUN ["a"', ('["a"',), False),
        ("RUN ['a']", ("['a']",), False),
        ('RUN ["a"] && b', ('["a"] && b',), False),
        ("RUN [NaN]", ("[NaN]",), False),
        ("RUN echo [1]", ("echo [1]",), False),
        # JSON form exists only for some instructions
        ('LABEL ["a"]', ('["a"]',), False),
        ('WORKDIR ["/x"]', ('["/x"]',), False),
        ('USER ["u"]', ('["u"]',), False),
    ],
)
def test_json_and_shell_form(line: str, args: tuple[str, ...], json_form: bool) -> None:
    inst = only(line)
    assert (inst.args, inst.json_form) == (args, json_form)


def test_json_array_of_non_strings_is_an_error() -> None:
    e = error_of('FROM a\nRUN ["a", 1]\n')
    assert e.line == 2
    assert "strings only" in str(e)


def test_empty_json_array_needs_cmd_or_entrypoint() -> None:
    e = error_of("FROM a\nRUN []\n")
    assert (e.line, "RUN requires at least one argument" in str(e)) == (2, True)


def test_multi_line_json() -> None:
    inst = only('CMD ["a", \\\n     "b"]')
    assert (inst.args, inst.json_form, inst.line) == (("a", "b"), True, 2)


# --- HEALTHCHECK and ONBUILD --------------------------------------------------


def test_healthcheck_none() -> None:
    assert only("HEALTHCHECK none").args == ("NONE",)


def test_healthcheck_none_with_more_is_an_error() -> None:
    e = error_of("FROM a\nHEALTHCHECK NONE x\n")
    assert e.line == 2
    assert "NONE" in str(e) and "'x'" in str(e)


def test_healthcheck_cmd_shell_form() -> None:
    inst = only("HEALTHCHECK --interval=5s --retries=3 cmd curl -f http://x/ || exit 1")
    assert inst.flags == (("interval", "5s"), ("retries", "3"))
    assert inst.args == ("CMD", "curl -f http://x/ || exit 1")
    assert not inst.json_form


def test_healthcheck_cmd_json_form() -> None:
    inst = only('HEALTHCHECK CMD ["curl", "-f", "http://x/"]')
    assert (inst.args, inst.json_form) == (("CMD", "curl", "-f", "http://x/"), True)


def test_healthcheck_cmd_without_command() -> None:
    e = error_of("FROM a\nHEALTHCHECK CMD\n")
    assert e.line == 2
    assert "HEALTHCHECK CMD" in str(e)


def test_healthcheck_unknown_type() -> None:
    e = error_of("FROM a\nHEALTHCHECK PING x\n")
    assert e.line == 2
    assert "PING" in str(e)


def test_onbuild_keeps_the_trigger_text() -> None:
    inst = only('ONBUILD RUN ["echo", "hi"]')
    assert inst.args == ('RUN ["echo", "hi"]',)
    assert not inst.json_form


# --- arguments required ---------------------------------------------------------


@pytest.mark.parametrize("keyword", ["RUN", "CMD", "ENV", "LABEL", "COPY", "USER", "ONBUILD"])
def test_instruction_without_arguments(keyword: str) -> None:
    e = error_of(f"FROM a\n{keyword}   \n")
    assert e.line == 2
    assert f"{keyword} requires at least one argument" in str(e)


def test_from_without_arguments() -> None:
    e = error_of("FROM\n")
    assert e.line == 1
    assert "FROM requires at least one argument" in str(e)


def test_other_keywords_keep_the_raw_rest() -> None:
    inst = only('ENV A="x y"   B=$C')
    assert inst.args == ('A="x y"   B=$C',)
    assert only("EXPOSE 80  443/udp").args == ("80  443/udp",)


# --- heredocs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "RUN <<EOF",
        "RUN <<-EOF",
        "RUN cat <<'EOF' > /x",
        'RUN python3 <<"PY"',
        "RUN 3<<EOF cat",
        "COPY <<EOF /etc/x",
        "ADD --chmod=644 <<EOF /x",
        "run <<eof",
    ],
)
def test_heredocs_are_refused(line: str) -> None:
    e = error_of(f"FROM a\n{line}\nhello\nEOF\n")
    assert e.line == 2
    assert "heredocs are not supported yet" in str(e)


@pytest.mark.parametrize(
    "line",
    [
        'RUN echo "<<EOF"',
        "RUN echo '<<EOF'",
        "RUN echo $((1<<2))",
        "RUN echo a<<b",
        "RUN echo << EOF",
        'RUN ["cat", "<<EOF"]',
        "CMD <<EOF",
    ],
)
def test_not_heredocs(line: str) -> None:
    only(line)


# --- FROM and stages -------------------------------------------------------------


def test_from_platform_and_name() -> None:
    df = parse("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\nRUN go build\n")
    (stage,) = df.stages
    assert (stage.name, stage.base, stage.platform) == ("build", "golang:1.22", "$BUILDPLATFORM")


@pytest.mark.parametrize("name", ["a", "build-1", "x_y.z", "b2"])
def test_valid_stage_names(name: str) -> None:
    assert parse(f"FROM a as {name}\n").stages[0].name == name


@pytest.mark.parametrize("name", ["1st", "-x", "a/b", "a:b", "_x"])
def test_invalid_stage_names(name: str) -> None:
    e = error_of(f"FROM a\nFROM b AS {name}\n")
    assert e.line == 2
    assert name in str(e)


@pytest.mark.parametrize("rest", ["a b", "a AS", "a AS b c", "a FROM b"])
def test_from_word_count(rest: str) -> None:
    e = error_of(f"FROM {rest}\n")
    assert e.line == 1
    assert "FROM requires either one argument, or three" in str(e)


@pytest.mark.parametrize("flag", ["--foo=bar", "--platform", "--platform="])
def test_from_flags(flag: str) -> None:
    e = error_of(f"FROM {flag} a\n")
    assert e.line == 1
    assert "--" in str(e)


def test_duplicate_stage_name() -> None:
    e = error_of("FROM a AS x\nFROM b AS X\n")
    assert e.line == 2
    assert "duplicate stage name 'x'" in str(e)


def test_multi_stage() -> None:
    text = (
        "ARG GO=1.22\n"
        "ARG BASE\n"
        "FROM golang:${GO} AS build\n"
        "WORKDIR /src\n"
        "RUN go build -o /app\n"
        "\n"
        "FROM scratch AS empty\n"
        "FROM alpine\n"
        "COPY --from=build /app /app\n"
        'ENTRYPOINT ["/app"]\n'
    )
    df = parse(text)
    assert [(a.args, a.line) for a in df.global_args] == [(("GO=1.22",), 1), (("BASE",), 2)]
    assert [s.index for s in df.stages] == [0, 1, 2]
    assert [s.name for s in df.stages] == ["build", "empty", None]
    assert [s.base for s in df.stages] == ["golang:${GO}", "scratch", "alpine"]
    assert [s.line for s in df.stages] == [3, 7, 8]
    assert [len(s.instructions) for s in df.stages] == [2, 0, 2]
    assert df.stage("build") is df.stages[0]
    assert df.stage("BUILD") is df.stages[0]
    assert df.stage("empty").instructions == ()
    assert df.stage("2") is df.stages[2]
    assert df.stage("0") is df.stages[0]


@pytest.mark.parametrize("key", ["nope", "3", "-1", ""])
def test_unknown_stage(key: str) -> None:
    df = parse("FROM a AS one\nFROM b\nFROM c\n")
    with pytest.raises(DockerfileError) as info:
        df.stage(key)
    assert repr(key) in str(info.value)


def test_arg_after_from_belongs_to_the_stage() -> None:
    df = parse("ARG A\nFROM x\nARG B\n")
    assert [a.args for a in df.global_args] == [("A",)]
    assert [i.args for i in df.stages[0].instructions] == [("B",)]


def test_instruction_before_from() -> None:
    e = error_of("ARG A\nRUN echo\nFROM a\n")
    assert e.line == 2
    assert "RUN" in str(e) and "FROM" in str(e)


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "ARG A=1\nARG B\n"])
def test_no_from(text: str) -> None:
    e = error_of(text)
    assert "no FROM instruction" in str(e)


def test_parsed_objects_are_frozen() -> None:
    inst = only("RUN x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        inst.keyword = "CMD"  # type: ignore[misc]


# Words of a command, not RUN's own flags: a first word starting with "--" is a flag.
_SAFE = st.text(alphabet="abcxyz0123/._-:=", min_size=1, max_size=8).filter(
    lambda w: not w.startswith("-")
)


@given(st.lists(_SAFE, min_size=1, max_size=6), st.lists(st.integers(0, 3), max_size=6))
def test_continuations_only_move_whitespace(words: list[str], breaks: list[int]) -> None:
    """Splitting a RUN over continuation lines keeps its words."""
    pieces = []
    for i, word in enumerate(words):
        pieces.append(word)
        if i < len(breaks) and breaks[i]:
            pieces.append(" \\\n" + " " * breaks[i])
        else:
            pieces.append(" ")
    inst = only("RUN " + "".join(pieces))
    assert inst.args[0].split() == words
    assert inst.line == 2


# --- the lexer: expand_word --------------------------------------------------------

WORD_CASES = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he\\'llo", "he'llo"),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hel\'lo"', "hel'lo"),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ("\"''\"", "''"),
    ("$.", "$."),
    ("$", "$"),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${NULL:-000}xx", "he000xx"),
    ("he${NULL-000}xx", "hexx"),
    ("he${XXX-000}xx", "he000xx"),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("he${NULL:+000}xx", "hexx"),
    ("he${NULL+000}xx", "he000xx"),
    ("he${PWD+${PWD}:}xx", "he/home:xx"),
    ("he${XXX+${SHELL}}xx", "hexx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ("\"he'$PWD'\"", "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("${XXX:-a b}", "a b"),
    ('${XXX:-"a  b"}', "a  b"),
    ("${XXX:-\\}}", "}"),
    ("${KOREAN}", "한국어"),
    ("안${KOREAN}", "안한국어"),
    ("안'녕'하세요", "안녕하세요"),
    ("$PWD$PWD", "/home/home"),
    ("${PWD}$PWD", "/home/home"),
    ("$PWD-x", "/home-x"),
    ("$?x", "x"),
    ('"a b"', "a b"),
    ("a b  c", "a b  c"),
    ('"a\\"b"', 'a"b'),
    ('"a\\b"', "a\\b"),
]


@pytest.mark.parametrize(("word", "expected"), WORD_CASES)
def test_expand_word(word: str, expected: str) -> None:
    assert expand_word(word, ENV) == expected


ERROR_CASES = [
    "he'llo",
    "he\\\\'llo",
    '"hello',
    '"hello\\"',
    "'hello",
    "${}",
    "${}aaa",
    "he${}xx",
    "he${.}",
    "he${PWD",
    "he${PWD:-",
    "he${PWD=000}xx",
    "he${XXX:YYY}",
    "he${XXX:=000}",
    "he${PWD#x}",
    "he${PWD%x}",
    "he${PWD/x/y}",
    "${:}",
    "${{x}}",
]


@pytest.mark.parametrize("word", ERROR_CASES)
def test_expand_word_errors(word: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(word))):
        expand_word(word, ENV)


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${XXX?}", "XXX: is not allowed to be unset"),
        ("${XXX:?}", "XXX: is not allowed to be unset"),
        ("${NULL:?}", "NULL: is not allowed to be empty"),
        ("${XXX?you must set XXX}", "XXX: you must set XXX"),
        ("${NULL:?need ${PWD}}", "NULL: need /home"),
        ("${PWD=x}", "unsupported modifier (=)"),
        ("${PWD:x}", "unsupported modifier (:x)"),
        ("${PWD", "missing '}'"),
        ("${}", "bad substitution"),
    ],
)
def test_expand_word_error_messages(word: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        expand_word(word, ENV)


def test_expand_word_with_backtick_escape() -> None:
    env = {"X": "1"}
    assert expand_word("C:\\dir\\$X", env, "`") == "C:\\dir\\1"
    assert expand_word("`$X", env, "`") == "$X"
    assert expand_word('"a`"b"', env, "`") == 'a"b'
    assert expand_word("hello`", env, "`") == "hello"
    assert expand_word("a` b", env, "`") == "a b"


@given(st.text(alphabet=st.characters(blacklist_characters="$'\"\\"), max_size=30))
def test_expand_word_without_special_characters_is_the_identity(word: str) -> None:
    assert expand_word(word, ENV) == word


@given(st.text(alphabet=st.characters(blacklist_characters="'"), max_size=30))
def test_single_quotes_keep_everything(word: str) -> None:
    assert expand_word(f"'{word}'", ENV) == word


# --- the lexer: expand_words ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b  c", ["a", "b", "c"]),
        ("  a \t b  ", ["a", "b"]),
        ("", []),
        ("   ", []),
        ('"a b" c', ["a b", "c"]),
        ("'a  b'c d", ["a  bc", "d"]),
        ('a"b c"d', ["ab cd"]),
        ("a\\ b c", ["a b", "c"]),
        ('a "" b', ["a", "", "b"]),
        ("''", [""]),
        ("$EMPTY b", ["b"]),
        ('"$EMPTY" b', ["", "b"]),
        ("$TWO", ["x", "y"]),
        ("a$TWO", ["ax", "y"]),
        ('"$TWO"', ["x  y"]),
        ("${EMPTY:-d e}", ["d", "e"]),
        ("$PWD/x $SHELL", ["/home/x", "bash"]),
    ],
)
def test_expand_words(text: str, expected: list[str]) -> None:
    env = {**ENV, "EMPTY": "", "TWO": "x  y"}
    assert expand_words(text, env) == expected


def test_expand_words_errors() -> None:
    with pytest.raises(ValueError, match="matching"):
        expand_words('a "b', ENV)


@given(st.lists(st.text(alphabet="abcXYZ019_./:-=", min_size=1, max_size=6), max_size=6))
def test_expand_words_splits_plain_words(words: list[str]) -> None:
    assert expand_words(" ".join(words), ENV) == words
    assert expand_words(" ".join(f'"{w}"' for w in words), ENV) == words


# --- ENV and LABEL ------------------------------------------------------------------


def test_key_values_modern_form() -> None:
    pairs = parse_key_values('a=1 b="x y" c=v\\ 3 d= e=""', ENV, keyword="ENV")
    assert pairs == [("a", "1"), ("b", "x y"), ("c", "v 3"), ("d", ""), ("e", "")]


def test_key_values_expand_with_the_old_environment() -> None:
    pairs = parse_key_values("A=new B=$A C=${PWD}/bin", {"A": "old", "PWD": "/w"}, keyword="ENV")
    assert pairs == [("A", "new"), ("B", "old"), ("C", "/w/bin")]


def test_key_values_single_quotes_do_not_expand() -> None:
    assert parse_key_values("a='$PWD'", ENV, keyword="ENV") == [("a", "$PWD")]


def test_label_quoted_keys() -> None:
    text = '"com.example.vendor"="ACME Inc" version=1.0 "a b"=c'
    pairs = parse_key_values(text, ENV, keyword="LABEL")
    assert pairs == [("com.example.vendor", "ACME Inc"), ("version", "1.0"), ("a b", "c")]


def test_key_values_value_keeps_later_equals() -> None:
    assert parse_key_values("a=b=c", ENV, keyword="ENV") == [("a", "b=c")]


def test_key_values_legacy_form() -> None:
    pairs = parse_key_values("key value  with\tspaces", ENV, keyword="ENV")
    assert pairs == [("key", "value  with\tspaces")]


def test_key_values_legacy_form_expands_and_unquotes() -> None:
    pairs = parse_key_values('PATH "$PWD/bin" and=more', ENV, keyword="ENV")
    assert pairs == [("PATH", "/home/bin and=more")]


def test_key_values_backtick_escape() -> None:
    pairs = parse_key_values("a=x` y b=C:\\dir", ENV, "`", keyword="ENV")
    assert pairs == [("a", "x y"), ("b", "C:\\dir")]


def test_key_values_legacy_needs_a_value() -> None:
    with pytest.raises(ValueError, match="ENV must have two arguments"):
        parse_key_values("onlykey", ENV, keyword="ENV")


def test_key_values_missing_equals() -> None:
    with pytest.raises(ValueError, match="can't find = in 'b'") as info:
        parse_key_values("a=1 b", ENV, keyword="LABEL")
    assert "LABEL" in str(info.value)


@pytest.mark.parametrize("text", ["=x", "a=1 =2", '""=x'])
def test_key_values_blank_names(text: str) -> None:
    with pytest.raises(ValueError, match="LABEL names can not be blank"):
        parse_key_values(text, ENV, keyword="LABEL")


def test_key_values_empty() -> None:
    with pytest.raises(ValueError, match="ENV requires at least one argument"):
        parse_key_values("  ", ENV, keyword="ENV")


def test_key_values_lexer_errors_surface() -> None:
    with pytest.raises(ValueError, match="matching"):
        parse_key_values('a="x', ENV, keyword="ENV")


# --- ARG ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", [("name", None)]),
        ("name=default", [("name", "default")]),
        ("a=1 b", [("a", "1"), ("b", None)]),
        ("a= b=", [("a", ""), ("b", "")]),
        ('v="x y"', [("v", "x y")]),
        ("p=$PWD/x", [("p", "/home/x")]),
        ("p=${NOPE:-fallback}", [("p", "fallback")]),
        ("_x1=a=b", [("_x1", "a=b")]),
    ],
)
def test_parse_arg(text: str, expected: list[tuple[str, str | None]]) -> None:
    assert parse_arg(text, ENV) == expected


@pytest.mark.parametrize("text", ["1a", "a-b=1", "a.b", "$X", "é=1"])
def test_parse_arg_invalid_names(text: str) -> None:
    with pytest.raises(ValueError, match="invalid name"):
        parse_arg(text, ENV)


def test_parse_arg_blank_name() -> None:
    with pytest.raises(ValueError, match="ARG names can not be blank"):
        parse_arg("=1", ENV)


def test_parse_arg_empty() -> None:
    with pytest.raises(ValueError, match="ARG requires at least one argument"):
        parse_arg("", ENV)


# --- durations ------------------------------------------------------------------------

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("+0", 0),
        ("0s", 0),
        ("30s", 30 * SECOND),
        ("1m30s", 90 * SECOND),
        ("1.5h", 5400 * SECOND),
        ("500ms", SECOND // 2),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("10μs", 10_000),
        ("7ns", 7),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        (".5s", SECOND // 2),
        ("1.s", SECOND),
        ("+5s", 5 * SECOND),
        ("1.0000000001s", SECOND),
        ("2562047h", 2562047 * 3600 * SECOND),
    ],
)
def test_parse_duration(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize(
    "text", ["", "+", "1", "-1s", "-0", "1x", "s", ".s", "1.5", "abc", "1h-1m", "1 s", "3000000h"]
)
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(0, 10**6), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_parse_duration_integers(n: int, unit: str) -> None:
    scale = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    assert parse_duration(f"{n}{unit}") == n * scale[unit]
