"""Helper for make_fixtures.sh: the far side of the test MTA (run from the repository root).

``tokens``: print ``SEND_ID TOKEN_ADDRESS`` lines for the fixture send ids (test key ring).
``serve OUTDIR``: SMTP servers on loopback for the MTA to talk to:
  2525 "shop.test": 550 5.1.1 for gone@, 552 5.2.2 for full@, 250 otherwise;
  2526 "bounce.test": accepts everything and writes each message to OUTDIR/<n>.eml;
  2527 "slow.test": 451 4.4.1 for every recipient (the MTA defers, then warns).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiosmtpd.controller import Controller

from nurture.inbound.verp import return_path
from nurture.signing import Signer

#: The key ring the tests use (tests/test_inbound_*.py): fixtures carry tokens it verifies.
TEST_KEYS = {"k1": b"inbound-fixture-secret"}
SEND_IDS = (101, 102, 103, 104, 111, 113)  # 11x: the Exim fixtures


class Shop:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        local = address.partition("@")[0].lower()
        if local == "gone":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if local == "full":
            return f"552 5.2.2 <{address}>: Mailbox full: quota exceeded"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return "250 OK"


class Slow:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        return f"451 4.4.1 <{address}>: Temporary failure: no answer from the mailbox host, try again later"


class Capture:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.n += 1
        rcpt = ",".join(envelope.rcpt_tos)
        data = f"X-Test-Envelope-To: {rcpt}\r\n".encode() + envelope.original_content
        (self.out / f"{self.n:02d}.eml").write_bytes(data)
        return "250 OK"


def main() -> None:
    if sys.argv[1] == "tokens":
        signer = Signer(TEST_KEYS, current="k1")
        for sid in SEND_IDS:
            print(sid, return_path(signer, sid, address="bounces@bounce.test"))
        return
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    servers = [Controller(Shop(), hostname="127.0.0.1", port=2525),
               Controller(Capture(out), hostname="127.0.0.1", port=2526),
               Controller(Slow(), hostname="127.0.0.1", port=2527)]
    for s in servers:
        s.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.sleep(3600))
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
