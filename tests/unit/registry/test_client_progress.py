"""Progress: dockerd's JSON progress lines and bars, and the CLI's display of them (TTY and plain)."""

from __future__ import annotations

import io

from pallet.cli.commands.pull import full_name, show_progress
from pallet.registry.client.progress import Progress, bar, human_size, message


def test_human_size_is_go_units_4_significant_digits():
    assert [human_size(n) for n in (0, 999, 1000, 2129920, 1_048_576, 5 * 10**9)] == \
        ["0B", "999B", "1kB", "2.13MB", "1.049MB", "5GB"]


def test_bar_matches_moby_json_progress():
    assert bar(1048576, 2129920) == "[========================>                          ]  1.049MB/2.13MB"
    assert bar(0, 100) == f"[>{' ' * 50}]       0B/100B"
    assert bar(100, 100) == f"[{'=' * 50}>]     100B/100B"
    assert bar(200, 100) == f"[{'=' * 50}>]     200B"
    assert bar(5000, None) == "     5kB" and bar(0, None) == ""


def test_messages_have_dockerds_shape():
    assert message(Progress("Pulling from library/busybox", "latest", plain=True)) == \
        {"status": "Pulling from library/busybox", "id": "latest"}
    assert message(Progress("Pull complete", "0db0bfba7330")) == \
        {"status": "Pull complete", "progressDetail": {}, "id": "0db0bfba7330"}
    assert message(Progress("Downloading", "0db0bfba7330", 10, 100)) == {
        "status": "Downloading", "progressDetail": {"current": 10, "total": 100},
        "progress": bar(10, 100), "id": "0db0bfba7330"}
    assert message(Progress("Digest: sha256:ab")) == {"status": "Digest: sha256:ab"}


STREAM = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "progress": "[=>  ] 1B/2B",
     "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Digest: sha256:ab"},
    {"progressDetail": {}, "aux": {"Tag": "latest"}},
]


def test_plain_output_leaves_out_bars():
    out = io.StringIO()
    aux = show_progress(STREAM, out, tty=False)
    assert out.getvalue().splitlines() == ["latest: Pulling from library/busybox", "aaa: Pulling fs layer",
                                           "bbb: Pulling fs layer", "aaa: Pull complete", "Digest: sha256:ab"]
    assert aux == [STREAM[-1]]


def test_tty_output_updates_each_layer_line_in_place():
    out = io.StringIO()
    show_progress(STREAM, out, tty=True)
    text = out.getvalue()
    # Two layer lines made; "aaa" updated two lines up and the cursor brought back down.
    assert "\x1b[2A\x1b[2K\raaa: Downloading [=>  ] 1B/2B\r\x1b[2B" in text
    assert "\x1b[2A\x1b[2K\raaa: Pull complete\r\x1b[2B" in text
    assert text.endswith("\x1b[2BDigest: sha256:ab\n")


def test_full_name_is_what_docker_pull_prints_last():
    assert full_name("busybox") == "docker.io/library/busybox:latest"
    assert full_name("me/app:1") == "docker.io/me/app:1"
    assert full_name("localhost:5000/a/b") == "localhost:5000/a/b:latest"
    assert full_name("r.io/a@sha256:ab") == "r.io/a@sha256:ab"
