"""Names used in file names, and paths kept inside their folder."""

import os
import re

import pytest

from mmbench.paths import UnsafePath, inside, safe_name


@pytest.mark.parametrize("name", ["image", "x1", "mnist_rotated", "view-2", "v.1", "A" * 100])
def test_safe_names_are_returned_unchanged(name):
    assert safe_name("view name", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../evil",
        "a/b",
        "/etc",
        ".hidden",
        "..",
        "a b",
        "tab\t",
        "é",
        "A" * 101,
        "x\x00",
        3,
        None,
    ],
)
def test_unsafe_names_are_refused_with_the_name_and_the_rule(name):
    with pytest.raises(UnsafePath) as raised:
        safe_name("view name", name)
    message = str(raised.value)
    assert message.startswith(f"view name {name!r} cannot be used in a file name")
    assert "letters, digits, '_', '.' or '-', not starting with '.'" in message


def test_inside_accepts_paths_in_the_folder_and_returns_them_absolute(tmp_path):
    assert inside(tmp_path, "figures/generations_x1.png") == tmp_path / "figures/generations_x1.png"
    assert inside(tmp_path, tmp_path / "a" / ".." / "b") == tmp_path / "b"
    assert inside(tmp_path, tmp_path) == tmp_path
    relative_folder = os.path.relpath(tmp_path)
    assert inside(relative_folder, "x") == tmp_path / "x"


@pytest.mark.parametrize("path", ["../outside", "a/../../outside", "/etc/passwd"])
def test_inside_refuses_paths_that_climb_out(tmp_path, path):
    with pytest.raises(
        UnsafePath,
        match=rf"lies outside {re.escape(str(tmp_path))}; mmbench "
        r"writes only inside",
    ):
        inside(tmp_path, path)
    # a sibling folder whose name starts like the folder's is outside too
    with pytest.raises(UnsafePath):
        inside(tmp_path / "results", tmp_path / "results-other" / "x")


def test_inside_follows_no_links_so_a_link_placed_in_the_folder_is_honoured(tmp_path):
    elsewhere = tmp_path / "big_disk"
    elsewhere.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    (results / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert inside(results, "figures/x.png") == results / "figures/x.png"
