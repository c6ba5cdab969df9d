"""Compose's env-file formats: compose-go's dotenv parser and the `raw` docker CLI format.

The cases restate compose-go's dotenv behaviour (and the compose-spec's env_file examples)
as our own tables: keys, quoting, escapes, comments, interpolation order, bare keys, and
errors that name the file and the line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestr.errors import OrchestrError
from orchestr.stack.dotenv import DotenvError, parse_dotenv, read_dotenv

pytestmark = pytest.mark.unit


def parse(text: str, **env: str) -> dict[str, str]:
    return parse_dotenv(text, lookup=env.get)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FOO=bar", {"FOO": "bar"}),
        ("FOO =bar", {"FOO": "bar"}),
        ("FOO= bar", {"FOO": "bar"}),
        ("FOO = bar ", {"FOO": "bar"}),
        ("  FOO=bar", {"FOO": "bar"}),
        ("\tFOO=bar", {"FOO": "bar"}),
        ("FOO=foobar=", {"FOO": "foobar="}),
        ("FOO=1:B", {"FOO": "1:B"}),
        ("FOO=", {"FOO": ""}),
        ("FOO=\nBAR=1", {"FOO": "", "BAR": "1"}),
        ("FOO = \n", {"FOO": ""}),
        ("FOO=a\nFOO=b", {"FOO": "b"}),
        # YAML-like "KEY: value"
        ("OPTION_A: 1", {"OPTION_A": "1"}),
        ("OPTION_A: Foo=bar", {"OPTION_A": "Foo=bar"}),
        # export
        ("export FOO=2", {"FOO": "2"}),
        ("export\tFOO=2", {"FOO": "2"}),
        ("  export FOO=2", {"FOO": "2"}),
        ('export FOO="export A"', {"FOO": "export A"}),
        ("export exportFoo=2", {"exportFoo": "2"}),
        ("exportFOO=2", {"exportFOO": "2"}),
        ("export_FOO =2", {"export_FOO": "2"}),
        ("export.FOO= 2", {"export.FOO": "2"}),
        ("export \nFOO=1", {"FOO": "1"}),
        # key characters
        ("FOO.BAR=foobar", {"FOO.BAR": "foobar"}),
        ("VAR-WITH-DASHES=dashes", {"VAR-WITH-DASHES": "dashes"}),
        ("a[1]=c", {"a[1]": "c"}),
        (
            "árvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép",
            {"árvíztűrő-TÜKÖRFÚRÓGÉP": "ÁRVÍZTŰRŐ-tükörfúrógép"},
        ),
        ("456 = ABC", {"456": "ABC"}),  # kept: only compose-go's Read drops digit keys
        ('="value"', {"": "value"}),
        # byte-order mark and Windows line ends
        ("\ufeffFOO=1\nBAR=2", {"FOO": "1", "BAR": "2"}),
        ("FOO=bar\r\nBAZ=\"q\"\r\nQUX='x'\r\n", {"FOO": "bar", "BAZ": "q", "QUX": "x"}),
        # blank text
        ("", {}),
        ("\n\n \t\n", {}),
        ("\r\n", {}),
    ],
)
def test_keys_and_plain_values(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# a comment\nFOO=bar", {"FOO": "bar"}),
        ("\t # indented comment\nFOO=1", {"FOO": "1"}),
        ("FOO=1\n# last line comment", {"FOO": "1"}),
        ("FOO=bar # this is foo", {"FOO": "bar"}),
        ("FOO=bar #this is foo", {"FOO": "bar"}),
        ("FOO=bar #", {"FOO": "bar"}),
        ("FOO=123#not-an-inline-comment", {"FOO": "123#not-an-inline-comment"}),
        ("VAR=VAL# not a comment", {"VAR": "VAL# not a comment"}),
        ("FOO=a\t# tab", {"FOO": "a\t# tab"}),  # only " #" starts a comment
        ('FOO="bar#baz"', {"FOO": "bar#baz"}),
        ('FOO="bar#baz"#', {"FOO": "bar#baz"}),
        ('FOO="bar#baz" # comment', {"FOO": "bar#baz"}),
        ("FOO='bar#baz' # comment", {"FOO": "bar#baz"}),
        ('FOO="bar#baz#bang" # comment', {"FOO": "bar#baz#bang"}),
        ('VAR="VAL # not a comment"', {"VAR": "VAL # not a comment"}),
        ("FOO=bar\n#BAZ=1\nQUX=2", {"FOO": "bar", "QUX": "2"}),
    ],
)
def test_comments(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('FOO="bar"', "bar"),
        ("FOO='bar'", "bar"),
        ('FOO=""', ""),
        ("FOO=''", ""),
        ('FOO = "some quoted phrase"', "some quoted phrase"),
        ("FOO = unquoted words here ", "unquoted words here"),
        ("FOO=special è char", "special è char"),
        ("FOO=\"'d'\"", "'d'"),
        ("FOO='\"d\"'", '"d"'),
        ("FOO=\"echo 'asd'\" # Inline comment", "echo 'asd'"),
        ('FOO="  padded  "', "  padded  "),
        # double quotes: escapes
        (r'FOO="escaped\"bar"', 'escaped"bar'),
        (r'FOO="\"quoted\""', '"quoted"'),
        (r'VAR="{\"hello\": \"json\"}"', '{"hello": "json"}'),
        (r'FOO="bar\nbaz"', "bar\nbaz"),
        (r'FOO="a\tb"', "a\tb"),
        (r'VAR="some\tvalue"', "some\tvalue"),
        (r'KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z"', "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"),
        (r'KEY="\0123"', "S"),
        (r'KEY="\0351t\0351"', "été"),
        (r'KEY="\01234"', "S4"),
        (r'KEY="\0"', r"\0"),  # not three octal digits: kept
        (r'KEY="\012"', r"\012"),
        (r'KEY="\0777"', r"\0777"),  # above 0o377: kept
        (r'KEY="\0128"', r"\0128"),
        (r'KEY="\x07"', r"\x07"),  # not supported: kept
        (r'KEY="\u12e4"', r"\u12e4"),
        (r'KEY="\U00101234"', r"\U00101234"),
        (r'KEY="\c"', r"\c"),
        (r'KEY="\q"', r"\q"),
        (r'KEY="it\'s"', r"it\'s"),
        (r'FOO="bar\n\ b\az"', "bar\n\\ b\az"),
        (r'FOO="bar\\\n\ b\az"', "bar\\\n\\ b\az"),
        (r'FOO="bar\\r\ b\az"', "bar\\r\\ b\az"),
        (r'FOO="bar\nbaz\\"', "bar\nbaz\\"),
        # single quotes: literal but for \'
        (r"FOO='\n'", r"\n"),
        (r"VAR='some\tvalue'", r"some\tvalue"),
        (r"VAR='Let\'s go!'", "Let's go!"),
        (r"FOO='a\\b'", r"a\\b"),
        ("VAR='$OTHER'", "$OTHER"),
        ("VAR='${OTHER}'", "${OTHER}"),
        ("VAR='${'", "${"),
        # unquoted: no escapes at all
        (r"FOO=a\tb", r"a\tb"),
        (r"VAR=some\tvalue", r"some\tvalue"),
        (r"FOO=a\"b", r"a\"b"),
    ],
)
def test_quoting_and_escapes(text: str, value: str) -> None:
    key = text.split("=", 1)[0].strip()
    assert parse(text) == {key: value}


def test_multi_line_values() -> None:
    text = (
        "OPTION_J = 'first line\nsecond line\nthird line\nand so on'\n"
        'URLS="stratum+tcp://a:3333\nstratum+tcp://b:443"\n'
        'ESCAPED="one\\ntwo"\n'
        "AFTER=1\n"
    )
    assert parse(text) == {
        "OPTION_J": "first line\nsecond line\nthird line\nand so on",
        "URLS": "stratum+tcp://a:3333\nstratum+tcp://b:443",
        "ESCAPED": "one\ntwo",
        "AFTER": "1",
    }


def test_text_after_a_closing_quote_is_a_new_statement() -> None:
    # compose-go's parser resumes right after the quote
    assert parse('A="x" B=y\nC=1') == {"A": "x", "B": "y", "C": "1"}
    assert parse("A='x'B=y") == {"A": "x", "B": "y"}


PLAIN = (
    "OPTION_A=1\n"
    "OPTION_B=2\n"
    "OPTION_C= 3\n"
    "OPTION_D =4\n"
    "OPTION_E = 5\n"
    "OPTION_F = \n"
    "OPTION_G=\n"
    "OPTION_H = my string # Inline comment\n"
)

QUOTED = """OPTION_A='1'
OPTION_B='2'
OPTION_C=''
OPTION_D='\\n'
OPTION_E="1"
OPTION_F="2"
OPTION_G=""
OPTION_H="\\n"
OPTION_I = "echo 'asd'" # Inline comment
OPTION_K='Let\\'s go!'
OPTION_Z = "last value"
"""


def test_plain_file() -> None:
    assert parse(PLAIN) == {
        "OPTION_A": "1",
        "OPTION_B": "2",
        "OPTION_C": "3",
        "OPTION_D": "4",
        "OPTION_E": "5",
        "OPTION_F": "",
        "OPTION_G": "",
        "OPTION_H": "my string",
    }


def test_quoted_file() -> None:
    assert parse(QUOTED) == {
        "OPTION_A": "1",
        "OPTION_B": "2",
        "OPTION_C": "",
        "OPTION_D": "\\n",
        "OPTION_E": "1",
        "OPTION_F": "2",
        "OPTION_G": "",
        "OPTION_H": "\n",
        "OPTION_I": "echo 'asd'",
        "OPTION_K": "Let's go!",
        "OPTION_Z": "last value",
    }


# Interpolation

SUBSTITUTIONS = """OPTION_A=1
OPTION_B=${OPTION_A}
OPTION_C=$OPTION_B
OPTION_D=${OPTION_A}_${OPTION_B}
OPTION_E=${OPTION_NOT_DEFINED}
"""


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("FOO=test\nBAR=$FOO", {}, {"FOO": "test", "BAR": "test"}),
        ("FOO=test\nBAR=${FOO}bar", {}, {"FOO": "test", "BAR": "testbar"}),
        ("BAR=$FOO", {}, {"BAR": ""}),
        ('FOO=test\nBAR="quote $FOO"', {}, {"FOO": "test", "BAR": "quote test"}),
        ("BAR='quote $FOO'", {}, {"BAR": "quote $FOO"}),
        (r'FOO="foo\$BAR"', {}, {"FOO": "foo$BAR"}),
        (r'FOO="foo\${BAR}"', {}, {"FOO": "foo${BAR}"}),
        ('FOO=test\nBAR="foo\\${FOO} ${FOO}"', {}, {"FOO": "test", "BAR": "foo${FOO} test"}),
        ("FOO=$$BAR", {"BAR": "x"}, {"FOO": "$BAR"}),
        ('FOO="$$BAR"', {"BAR": "x"}, {"FOO": "$BAR"}),
        # unquoted values are not unescaped: the backslash stays, $BAR is substituted
        (r"FOO=\$BAR", {"BAR": "x"}, {"FOO": "\\x"}),
        ('FOO="a\\nb$BAR"', {"BAR": "x"}, {"FOO": "a\nbx"}),
        ("TEST=$ME", {"ME": "YES"}, {"TEST": "YES"}),
        ("A=${X:-dflt} ${Y:+alt}", {"Y": "1"}, {"A": "dflt alt"}),
        ("A=${X-dflt}", {"X": ""}, {"A": ""}),
        # a key is visible only after it is read
        ("A=$B\nB=1", {}, {"A": "", "B": "1"}),
        # a bare key taken from the environment can be referenced
        ("HOME\nCONF=$HOME/.conf", {"HOME": "/root"}, {"HOME": "/root", "CONF": "/root/.conf"}),
        # the environment wins over the file's own earlier keys
        (
            SUBSTITUTIONS,
            {"OPTION_A": "5"},
            {"OPTION_A": "1", "OPTION_B": "5", "OPTION_C": "5", "OPTION_D": "5_5", "OPTION_E": ""},
        ),
        (
            SUBSTITUTIONS,
            {},
            {"OPTION_A": "1", "OPTION_B": "1", "OPTION_C": "1", "OPTION_D": "1_1", "OPTION_E": ""},
        ),
        (
            SUBSTITUTIONS.replace("OPTION_A=1", "OPTION_A=${OPTION_A:-1}"),
            {"OPTION_A": "5"},
            {"OPTION_A": "5", "OPTION_B": "5", "OPTION_C": "5", "OPTION_D": "5_5", "OPTION_E": ""},
        ),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: dict[str, str]) -> None:
    assert parse(text, **env) == expected


def test_interpolation_warns_once_per_variable() -> None:
    got: list[str] = []
    parse_dotenv("A=$X\nB=${X}\nC=$Y\nD='$Z'", warn=got.append)
    assert got == [
        'The "X" variable is not set. Defaulting to a blank string.',
        'The "Y" variable is not set. Defaulting to a blank string.',
    ]


# Bare keys


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("FOO\n", {"FOO": "from env"}, {"FOO": "from env"}),
        ("FOO\n", {}, {}),
        ("FOO", {"FOO": "x"}, {"FOO": "x"}),  # last line without a newline
        ("FOO", {}, {}),
        ("FOO  \nBAR=1", {"FOO": ""}, {"FOO": "", "BAR": "1"}),
        ("FOO\r\n", {"FOO": "x"}, {"FOO": "x"}),
        ("export FOO\n", {"FOO": "x"}, {"FOO": "x"}),
        (
            "foo=bar\nVAR_FROM_ENV\nbar=baz\n",
            {"VAR_FROM_ENV": "v"},
            {"foo": "bar", "VAR_FROM_ENV": "v", "bar": "baz"},
        ),
        # the file's own keys do not feed a bare key, nor does a missing one erase them
        ("A=1\nB\n", {}, {"A": "1"}),
        ("A=1\nA\n", {}, {"A": "1"}),
        ("ENV_A\nENV_B=\nENV_C=env_c", {}, {"ENV_B": "", "ENV_C": "env_c"}),
    ],
)
def test_bare_keys(text: str, env: dict[str, str], expected: dict[str, str]) -> None:
    assert parse(text, **env) == expected


# Errors


def error_of(text: str, filename: str = ".env", **env: str) -> DotenvError:
    with pytest.raises(DotenvError) as caught:
        parse_dotenv(text, lookup=env.get, filename=filename)
    return caught.value


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("lol$wut", 1, 'unexpected character "$" in variable name "lol$wut"'),
        (
            "%!(EXTRA string)=foo",
            1,
            'unexpected character "%" in variable name "%!(EXTRA string)=foo"',
        ),
        ("A=1\n\n# c\nB*C=2\nD=3", 4, 'unexpected character "*" in variable name "B*C=2"'),
        ("A=1\n'B'=2", 2, 'unexpected character "\'" in variable name "\'B\'=2"'),
        ("FOO BAR=1", 1, "key cannot contain a space"),
        (
            '# some comments\nfoo="\n  a\n  multine\n  value\n"\nINVALID LINE\nzot=qix',
            7,
            "key cannot contain a space",
        ),
        ("A='x\ny\nz'\nB C=1", 4, "key cannot contain a space"),
        ('KEY="', 1, 'unterminated quoted value "'),
        ('KEY="value', 1, 'unterminated quoted value "value'),
        ('KEY="value\\"', 1, 'unterminated quoted value "value\\"'),
        ("KEY=\"value'", 1, "unterminated quoted value \"value'"),
        ("KEY='", 1, "unterminated quoted value '"),
        ("KEY='value", 1, "unterminated quoted value 'value"),
        ("KEY='value\\'", 1, "unterminated quoted value 'value\\'"),
        ("KEY='value\"", 1, "unterminated quoted value 'value\""),
        ('A=1\nB="abc\nC=2\nD=3', 2, 'unterminated quoted value "abc'),
        (
            "A=1\n\nB=${C",
            3,
            'invalid interpolation format for B: "${C".'
            " You may need to escape any $ with another $.",
        ),
        (
            'A="\n"\nB="${C:?set C}"',
            3,
            "error while interpolating B: required variable C is missing a value: set C",
        ),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    error = error_of(text, filename="app.env")
    assert str(error) == f"failed to read app.env: line {line}: {message}"
    assert error.filename == "app.env"
    assert error.line == line
    assert isinstance(error, ValueError)
    assert isinstance(error, OrchestrError)


def test_default_filename_in_errors() -> None:
    assert str(error_of("A B=1")) == "failed to read .env: line 1: key cannot contain a space"


def test_unknown_format() -> None:
    with pytest.raises(DotenvError, match='unsupported env_file format "yaml"'):
        parse_dotenv("A=1", format="yaml")


# The raw format


def raw(text: str, **env: str) -> dict[str, str]:
    return parse_dotenv(text, lookup=env.get, format="raw")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('A="quoted"', {}, {"A": '"quoted"'}),
        ("A='single'", {}, {"A": "'single'"}),
        ("A=$FOO ${BAR:-x} $$", {"FOO": "f"}, {"A": "$FOO ${BAR:-x} $$"}),
        ("A=a\\tb\\n", {}, {"A": "a\\tb\\n"}),
        ("A=val # not a comment  ", {}, {"A": "val # not a comment  "}),
        ("A= lead", {}, {"A": " lead"}),
        ("  \tA=1", {}, {"A": "1"}),
        ("A=b=c", {}, {"A": "b=c"}),
        ("A=", {}, {"A": ""}),
        ("# comment\n\n  # indented\nA=1\n", {}, {"A": "1"}),
        ("A=1\r\nB=2\r\n", {}, {"A": "1", "B": "2"}),
        ("\ufeffA=1", {}, {"A": "1"}),
        ("A=1\nA=2", {}, {"A": "2"}),
        ("BARE\nA=1", {"BARE": "env"}, {"BARE": "env", "A": "1"}),
        ("BARE\nA=1", {}, {"A": "1"}),
        ("A.B-c[0]=1", {}, {"A.B-c[0]": "1"}),
        # no multi-line values: the second line is a bare key of its own
        ('A="x\ny"', {'y"': "looked up"}, {"A": '"x', 'y"': "looked up"}),
    ],
)
def test_raw_format(text: str, env: dict[str, str], expected: dict[str, str]) -> None:
    assert raw(text, **env) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\n=x", "failed to read raw.env: line 2: no variable name on line '=x'"),
        ("A=1\n\nA B=1", "failed to read raw.env: line 3: variable 'A B' contains whitespaces"),
        ("export A=1", "failed to read raw.env: line 1: variable 'export A' contains whitespaces"),
        ("A\tB", "failed to read raw.env: line 1: variable 'A\tB' contains whitespaces"),
    ],
)
def test_raw_format_errors(text: str, message: str) -> None:
    with pytest.raises(DotenvError) as caught:
        parse_dotenv(text, filename="raw.env", format="raw")
    assert str(caught.value) == message


# Reading files


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text('A=1\nB="$A-$HOME"\nC\n')
    assert read_dotenv(str(path), lookup={"HOME": "/h", "C": "c"}.get) == {
        "A": "1",
        "B": "1-/h",
        "C": "c",
    }
    assert read_dotenv(path) == {"A": "1", "B": "1-"}


def test_read_raw_file(tmp_path: Path) -> None:
    path = tmp_path / "raw.env"
    path.write_text('A="$B"\n')
    assert read_dotenv(path, format="raw") == {"A": '"$B"'}


def test_missing_required_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.env"
    with pytest.raises(DotenvError) as caught:
        read_dotenv(path)
    assert str(caught.value) == f"env file {path} not found"
    assert caught.value.filename == str(path)


def test_missing_optional_file(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / "missing.env", required=False) == {}


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DotenvError, match=r"failed to read .*: Is a directory"):
        read_dotenv(tmp_path, required=False)


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("A=1\nB C=2\n")
    with pytest.raises(DotenvError) as caught:
        read_dotenv(path)
    assert str(caught.value) == f"failed to read {path}: line 2: key cannot contain a space"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.env"
    path.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(DotenvError) as caught:
        read_dotenv(path)
    assert str(caught.value) == f"failed to read {path}: line 2: invalid utf8 bytes"
    assert caught.value.line == 2
