""".dockerignore rules: reading, matching and walking a context.

Many matching cases restate moby/patternmatcher's table (TestMatches), as
whole-path questions: a pattern also matches everything below what it matches.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.images.build.ignore import IgnoreRules

# --- reading --------------------------------------------------------------------


def test_comments_blank_lines_and_trimming() -> None:
    rules = IgnoreRules.parse("# comment\n\n   \n  *.log  \n\tbuild\n")
    assert rules.patterns == ("*.log", "build")


def test_a_comment_starts_in_the_first_column() -> None:
    # As in moby's ignorefile: `#` after blanks is part of a pattern.
    rules = IgnoreRules.parse("  #keep\n")
    assert rules.patterns == ("#keep",)
    assert rules.excluded("#keep")


def test_exceptions_and_cleaning() -> None:
    text = "!keep.log\n! spaced\n/abs/path\n./a/../b/\na//c\n/\n!/x\n"
    rules = IgnoreRules.parse(text)
    assert rules.patterns == ("!keep.log", "!spaced", "abs/path", "b", "a/c", "/", "!x")


def test_bom_and_crlf() -> None:
    rules = IgnoreRules.parse("\ufeffa\r\nb\r\n")
    assert rules.patterns == ("a", "b")


def test_no_rules_exclude_nothing() -> None:
    rules = IgnoreRules.parse("")
    assert not rules.excluded("anything")
    assert not IgnoreRules().excluded("x/y")


@pytest.mark.parametrize(
    "pattern",
    ["[", "a[", "[a", "[]", "[a-]", "[a-]]", "[^]", "[-a]", "a\\", "[a\\", "x/[z", "!", "  !  "],
)
def test_malformed_patterns(pattern: str) -> None:
    with pytest.raises(ValueError) as info:
        IgnoreRules.parse(f"ok\n{pattern}\n")
    assert repr(pattern.strip()) in str(info.value) or "!" in str(info.value)


@pytest.mark.parametrize("pattern", ["[a-c]", "[^a]", "[\\]]", "[\\-]", "\\*", "[z-a]x"])
def test_well_formed_classes(pattern: str) -> None:
    IgnoreRules.parse(pattern)


# --- matching -------------------------------------------------------------------

MATCHES = [
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "file", True),
    ("**/", "dir/file", True),
    ("**/file", "file", True),
    ("**/file", "dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file", "dirfile", False),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    ("a[^b-d]e", "ace", False),
    ("a[\\]]e", "a]e", True),
    ("a[*]e", "a*e", True),
    ("a[*]e", "axe", False),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("abc?def", "abc/def", False),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/bc", False),
    ("*", "file", True),
    ("*", "dir/file", True),  # through its parent
    ("*.go", "dir/file.go", False),
    ("dir/*", "dir", False),
    ("dir/*", "dir/a/b", True),
    # a pattern matches its paths' descendants too
    ("foo", "foo/bar", True),
    ("foo", "foo/bar/baz", True),
    ("foo", "foobar", False),
    ("foo", "x/foo", False),
    ("foo/bar", "foo", False),
    ("/foo", "foo/x", True),
    ("./foo/", "foo", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), MATCHES)
def test_matching(pattern: str, path: str, excluded: bool) -> None:
    assert IgnoreRules.parse(pattern).excluded(path) is excluded


def test_path_normalisation() -> None:
    rules = IgnoreRules.parse("foo")
    assert rules.excluded("./foo")
    assert rules.excluded("foo/")
    assert rules.excluded("/foo/bar")
    assert not rules.excluded(".")
    assert not rules.excluded("")


def test_the_last_matching_pattern_wins() -> None:
    rules = IgnoreRules.parse("*.log\n!keep.log\n")
    assert rules.excluded("a.log")
    assert not rules.excluded("keep.log")
    assert not rules.excluded("b.txt")


def test_exclude_again_after_an_exception() -> None:
    rules = IgnoreRules.parse("*.md\n!README*.md\nREADME-secret.md\n")
    assert rules.excluded("CHANGES.md")
    assert not rules.excluded("README.md")
    assert rules.excluded("README-secret.md")


def test_exception_inside_an_excluded_directory() -> None:
    rules = IgnoreRules.parse("docs\n!docs/keep.md\n")
    assert rules.excluded("docs")
    assert rules.excluded("docs/other.md")
    assert not rules.excluded("docs/keep.md")


def test_exception_of_a_parent_reincludes_children() -> None:
    rules = IgnoreRules.parse("**/*.tmp\n!cache\n")
    assert not rules.excluded("cache/x.tmp")
    assert rules.excluded("other/x.tmp")


def test_everything_but() -> None:
    rules = IgnoreRules.parse("*\n!src\n!Dockerfile\n")
    assert rules.excluded("README.md")
    assert not rules.excluded("src/main.py")
    assert not rules.excluded("Dockerfile")


_SEGMENT = st.sampled_from(["a", "b", "ab", "c.d"])
_LITERAL = st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join)


def _reference(patterns: list[tuple[bool, str]], path: str) -> bool:
    """Last literal pattern equal to the path or to one of its parents decides."""
    result = False
    for exception, pattern in patterns:
        if path == pattern or path.startswith(pattern + "/"):
            result = not exception
    return result


@given(st.lists(st.tuples(st.booleans(), _LITERAL), max_size=6), _LITERAL)
def test_literal_patterns_agree_with_a_reference(
    patterns: list[tuple[bool, str]], path: str
) -> None:
    text = "\n".join(("!" if exception else "") + p for exception, p in patterns)
    assert IgnoreRules.parse(text).excluded(path) is _reference(patterns, path)


# --- files: for_context and walk --------------------------------------------------


def make_tree(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel)


def test_for_context_without_files(tmp_path: Path) -> None:
    assert IgnoreRules.for_context(str(tmp_path)).patterns == ()
    assert IgnoreRules.for_context(str(tmp_path), "Dockerfile").patterns == ()


def test_for_context_reads_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.log\n")
    assert IgnoreRules.for_context(str(tmp_path)).patterns == ("*.log",)
    assert IgnoreRules.for_context(str(tmp_path), "Dockerfile").patterns == ("*.log",)


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.log\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "app.Dockerfile.dockerignore").write_text("secret\n")
    rules = IgnoreRules.for_context(str(tmp_path), "sub/app.Dockerfile")
    assert rules.patterns == ("secret",)
    absolute = IgnoreRules.for_context(str(tmp_path), str(tmp_path / "sub" / "app.Dockerfile"))
    assert absolute.patterns == ("secret",)
    # Another Dockerfile falls back to the context's file.
    assert IgnoreRules.for_context(str(tmp_path), "Dockerfile").patterns == ("*.log",)


def test_for_context_malformed_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("[oops\n")
    with pytest.raises(ValueError, match=r"\[oops"):
        IgnoreRules.for_context(str(tmp_path))


def test_walk_without_rules(tmp_path: Path) -> None:
    make_tree(tmp_path, ["b.txt", "a/x", "a/y/z", "empty/"])
    assert IgnoreRules().walk(str(tmp_path)) == sorted(
        ["a", "a/x", "a/y", "a/y/z", "b.txt", "empty"]
    )


def test_walk_prunes_excluded_directories(tmp_path: Path) -> None:
    make_tree(
        tmp_path, ["src/main.py", "node_modules/x/y.js", "build/out", "app.log", "Dockerfile"]
    )
    rules = IgnoreRules.parse("node_modules\nbuild/\n*.log\n")
    assert rules.walk(str(tmp_path)) == ["Dockerfile", "src", "src/main.py"]


def test_walk_descends_for_exceptions(tmp_path: Path) -> None:
    make_tree(tmp_path, ["docs/a.md", "docs/keep.md", "docs/deep/keep.md", "x"])
    rules = IgnoreRules.parse("docs\n!docs/keep.md\n!**/deep/keep.md\n")
    assert rules.walk(str(tmp_path)) == ["docs/deep/keep.md", "docs/keep.md", "x"]


def test_walk_everything_but(tmp_path: Path) -> None:
    make_tree(tmp_path, ["Dockerfile", "README", "src/a.py", "src/b/c.py", "tests/t.py"])
    rules = IgnoreRules.parse("*\n!src\n!Dockerfile\n")
    assert rules.walk(str(tmp_path)) == ["Dockerfile", "src", "src/a.py", "src/b", "src/b/c.py"]


def test_walk_does_not_follow_symlinks(tmp_path: Path) -> None:
    make_tree(tmp_path, ["real/file"])
    os.symlink("real", tmp_path / "link")
    os.symlink("/nonexistent", tmp_path / "dangling")
    assert IgnoreRules().walk(str(tmp_path)) == ["dangling", "link", "real", "real/file"]
    assert IgnoreRules.parse("real\n").walk(str(tmp_path)) == ["dangling", "link"]


_PATTERN_PART = st.sampled_from(["a", "b", "*", "?", "**", "[ab]", "a*"])
_PATTERN = st.tuples(st.booleans(), st.lists(_PATTERN_PART, min_size=1, max_size=3)).map(
    lambda t: ("!" if t[0] else "") + "/".join(t[1])
)
_TREE = st.lists(st.lists(st.sampled_from(["a", "b", "ab", "c"]), min_size=1, max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.lists(_PATTERN, max_size=4), _TREE)
def test_walk_lists_exactly_the_included_entries(
    patterns: list[str], tree: list[list[str]]
) -> None:
    """Pruning never hides an included entry: walk equals filtering every entry."""
    rules = IgnoreRules.parse("\n".join(patterns))
    with tempfile.TemporaryDirectory() as root:
        for parts in tree:
            # The last component is a file; a path through a file is skipped.
            try:
                os.makedirs(os.path.join(root, *parts[:-1]), exist_ok=True)
                target = Path(root, *parts)
                if not target.exists():
                    target.write_text("x")
            except (NotADirectoryError, FileExistsError):
                continue
        everything = []
        for current, dirs, files in os.walk(root):
            for name in dirs + files:
                everything.append(os.path.relpath(os.path.join(current, name), root))
        expected = sorted(p for p in everything if not rules.excluded(p))
        assert rules.walk(root) == expected
