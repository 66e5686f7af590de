"""Reading the result lines of launched processes: ``TAG {json}``, one line per rank (or per run)."""

import json


def tagged_records(stdout, tag):
    """The text after each ``tag`` up to the end of its line, in order.

    Workers print ``tag + payload + "\\n"`` in one write (atomic on a pipe below PIPE_BUF), but another rank's
    unterminated output may precede it on the same line, so the tag is looked for anywhere in a line.
    """
    return [line.split(tag + " ", 1)[1] for line in stdout.splitlines() if tag + " " in line]


def records(stdout, tag) -> list[dict]:
    """``tagged_records`` read as JSON."""
    return [json.loads(r) for r in tagged_records(stdout, tag)]
