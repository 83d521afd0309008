"""A deterministic task model a Ray actor builds from its spec, `mock/tests.ray_script:arith`, and a
way to make it kill its own actor process once, mid-evaluation, for the fault tests."""

from __future__ import annotations

import os
import time

from tests.search.conftest import task_reply

DIE_ON = "AGENTMETA_TEST_DIE_ON"
"""`<prompt text>|<marker file>`: the first process that sees the text in a prompt creates the
marker file and exits at once (a crashed actor); later processes carry on."""
DELAY = "AGENTMETA_TEST_DELAY_S"
"""Seconds every call waits, so samples are in flight when the actor dies."""


def arith(request) -> str:
    """Answers 'What is a + b?' right (wrong for a 'sloppy' role), like the campaign tests' model."""
    if os.environ.get(DELAY):
        time.sleep(float(os.environ[DELAY]))
    rule = os.environ.get(DIE_ON)
    if rule:
        text, _, marker = rule.partition("|")
        if text in " ".join(m.content for m in request.messages):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(1)
    return task_reply(request)
